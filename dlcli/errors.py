"""The errors dlcli raises on purpose, each tied to one exit code of the contract.

A user's mistake is a `ConfigError` (exit 2): it carries every problem found, each one
line that names the file, the line where there is one, what is wrong and how to fix it.
A failure while the work runs is a `RunFailed` (exit 1); an unmet CI gate is a
`GateFailed` (exit 3). The CLI turns them into one line each on stderr; anything else
that escapes is a bug and keeps its traceback under `--debug`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GATE = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input.

    Args:
        message: what is wrong and, where it helps, how to fix it.
        where: the place, such as `configs/x.yaml:14` or `--set training.epochs`.
        path: the dotted path into the config (`model.layers[1]`), if any.
    """

    message: str
    where: str = ""
    path: str = ""

    def __str__(self) -> str:
        parts = [p for p in (self.where, self.path) if p]
        return ": ".join([*parts, self.message])


class DlcliError(Exception):
    """Base of the errors that map to an exit code and print without a traceback.

    `payload` is what the command had to say besides the error (the metrics of an
    evaluation whose gate failed); with `--json` it goes into the one JSON object.
    """

    exit_code = EXIT_FAILED
    payload: dict | None = None


class ConfigError(DlcliError):
    """Usage or config error, found before any training starts (exit 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, (Problem, str)):
            problems = [problems]
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class RunFailed(DlcliError):
    """The work failed at run time: NaN loss, data lost mid-run, out of memory (exit 1)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, payload: dict | None = None):
        super().__init__(message)
        self.payload = payload


class GateFailed(DlcliError):
    """A `--fail-under` / `--fail-over` gate was not met (exit 3)."""

    exit_code = EXIT_GATE

    def __init__(self, message: str, payload: dict | None = None):
        super().__init__(message)
        self.payload = payload or {}


class Interrupted(DlcliError):
    """SIGINT or SIGTERM stopped the work; the run folder says `interrupted` (exit 130)."""

    exit_code = EXIT_INTERRUPTED


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none.

    Example:
        >>> first_line(ValueError("bad shape\\nmore detail"))
        'bad shape'
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def io_error(exc: OSError) -> str:
    """An OSError as one sentence naming the file and the fix.

    Example:
        >>> io_error(OSError(28, "No space left on device", "runs/x/model.keras"))
        'I/O error on runs/x/model.keras: No space left on device; free disk space or check permissions'
    """
    where = f" on {exc.filename}" if exc.filename else ""
    return (
        f"I/O error{where}: {exc.strerror or first_line(exc)}; free disk space or check permissions"
    )


def closest(word: str, choices, n: int = 1) -> list[str]:
    """The choices nearest to `word` (case-insensitive), best first; [] when none is close."""
    choices = list(choices)
    lowered = {str(c).lower(): c for c in choices}
    return [
        lowered[c]
        for c in difflib.get_close_matches(str(word).lower(), list(lowered), n=n, cutoff=0.6)
    ]


def did_you_mean(word: str, choices, n: int = 1) -> str:
    """A ` (did you mean 'x'?)` suffix for the closest choice, or '' when none is close.

    Example:
        >>> did_you_mean("unit", ["units", "activation"])
        " (did you mean 'units'?)"
    """
    close = closest(word, choices, n)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
