"""What every command shares: its options, how errors become one line and an exit code,
`--json` output, and the rich tables and number formats.

A command is a plain function with typed parameters, wrapped in `command`; the work happens
in library calls. Nothing here knows how training works.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dlcli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    ConfigError,
    DlcliError,
    Problem,
    RunFailed,
    first_line,
    io_error,
)
from dlcli.files import json_text
from dlcli.training.signals import Terminated, main_thread, signals_raise

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set training.epochs=3 (dotted path, list index, YAML value)."),
]
BackendOption = Annotated[
    str | None,
    typer.Option("--backend", help="tensorflow, jax or torch (default: the config's runtime.backend; auto: the fastest installed).",
                 show_default=False),
]


def check_backend(value: str | None) -> str | None:
    """--backend's value, or a usage error naming the choices."""
    from dlcli.runtime.backend import BACKENDS

    choices = ("auto", *BACKENDS)
    if value is not None and value not in choices:
        from dlcli.errors import did_you_mean

        raise ConfigError(Problem(f"expected one of {', '.join(choices)}, got '{value}'{did_you_mean(value, choices)}",
                                  where="--backend"))
    return value


RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", envvar="DLCLI_RUNS_DIR", help="Where run folders live.", show_default="runs"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout; logs go to stderr.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
RunArgument = Annotated[str | None, typer.Argument(help="A run folder, its id under the runs dir, or 'latest'.")]


def out() -> Console:
    return Console(soft_wrap=True)


def err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def emit_json(data: dict) -> None:
    write_stdout(json_text(data) + "\n")


def write_stdout(text: str) -> None:
    """A command's result on standard output; a full disk or a closed pipe there is a
    failure of the run (exit 1) in one line, as for any file dlcli writes."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        raise RunFailed(f"cannot write to standard output: {exc.strerror or first_line(exc)}") from None


CLOSED_STREAMS: set[int] = set()  # 0, 1, 2: closed when dlcli started (`>&-`), now /dev/null


def reserve_standard_streams() -> None:
    """Give a standard stream that was closed when dlcli started (`dlcli predict ... >&-`)
    /dev/null, and remember it: otherwise the next file dlcli opens takes its number, and a
    library's stray print would land in that file (a model, a JSON record)."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        CLOSED_STREAMS.add(fd)
        stream = open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115 - for the process's life
        setattr(sys, name, stream)


def require_stdout(fix: str) -> None:
    """A usage error, before any work, when the command's result goes to a standard output
    that was closed: it would be lost."""
    if 1 in CLOSED_STREAMS:
        raise ConfigError(Problem(f"standard output is closed (>&-), so the result would be lost; {fix}"))


def command(func):
    """Run a command; turn dlcli's own errors into one line and their exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        as_json, debug = kwargs.get("as_json", False), kwargs.get("debug", False)
        saved = os.environ.get("DLCLI_DEBUG")
        if debug:
            os.environ["DLCLI_DEBUG"] = "1"
        _STATE.update(as_json=as_json, done=False)
        try:
            if as_json:
                require_stdout("leave it open for --json, or drop --json")
            if AS_PROGRAM:
                result = func(*args, **kwargs)
            else:  # in-process (tests, notebooks): signals raise as they do in training
                with signals_raise():
                    result = func(*args, **kwargs)
            _done()
            return result
        except DlcliError as exc:
            if debug:
                traceback.print_exc()
            _fail(str(exc), exc.exit_code, as_json, exc.payload)
        except (KeyboardInterrupt, Terminated):
            _fail("interrupted", EXIT_INTERRUPTED, as_json)
        except OSError as exc:  # a full disk, a read-only folder: the cause in one line
            if debug:
                traceback.print_exc()
            _fail(io_error(exc), EXIT_FAILED, as_json)
        finally:
            if debug and saved is None:
                os.environ.pop("DLCLI_DEBUG", None)

    return wrapper


def _done() -> None:
    """The command's work is done and printed: a signal from here on (while the backends
    tear down) ends the process with exit 0, as the result stands."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise RunFailed(f"cannot write to standard output: {exc.strerror or first_line(exc)}") from None
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    _STATE["done"] = True


_STATE = {"as_json": False, "done": False}


def on_program_signal(signum, frame) -> None:
    """The `dlcli` program's SIGINT/SIGTERM handler outside an open run folder (training
    installs its own, `dlcli.training.signals`): the work so far is only in memory, so end now with
    130 (one line, and the JSON object under --json), or with 0 once the result is out."""
    if _STATE["done"]:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stderr.flush()
    # fd 2 may be hushed while a backend imports; dlcli.runtime.backend may itself be half-imported
    quieted = getattr(sys.modules.get("dlcli.runtime.keras_import"), "REAL_STDERR", [])
    os.write(quieted[-1] if quieted else 2, b"error: interrupted\n")  # plain: rich may be half-imported
    if _STATE["as_json"]:
        with contextlib.suppress(DlcliError):
            emit_json({"error": "interrupted", "errors": ["interrupted"], "exit_code": EXIT_INTERRUPTED})
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def install_program_signals() -> None:
    """Make `on_program_signal` the process's SIGINT/SIGTERM handler (main thread)."""
    if main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_program_signal)


def _fail(message: str, code: int, as_json: bool, payload: dict | None = None):
    if code == EXIT_INTERRUPTED:
        # The run folder already says `interrupted`: a second Ctrl-C must not turn the exit
        # into a traceback, and the user asked to stop, so skip TensorFlow's slow teardown.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    stderr = err()
    lines = message.splitlines() or [message]
    for line in lines:
        stderr.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
    if as_json and 1 not in CLOSED_STREAMS:
        with contextlib.suppress(DlcliError):  # stdout failing too: the line on stderr stands
            emit_json({**(payload or {}), "error": message, "errors": lines, "exit_code": code})
    if code == EXIT_INTERRUPTED and AS_PROGRAM:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def metrics_table(title: str, sections: dict[str, dict]) -> Table:
    """One row per split (train/val/test, or an evaluation), one column per metric."""
    names = list(dict.fromkeys(name for values in sections.values() if values for name in values))
    table = Table(title=escape(title), title_justify="left")
    table.add_column("split")
    for name in names:
        table.add_column(escape(name), justify="right", no_wrap=True)
    for split, values in sections.items():
        if values:
            table.add_row(escape(str(split)), *[number(values.get(n)) for n in names])
    return table


def number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"


def exports_table(report: dict) -> Table:
    """A run's exports.json as a table: one row per format, with its check and latency."""
    table = Table(title=f"exports of {report.get('run')}: checked on {report.get('test_samples')} test samples "
                        f"({report.get('route')})", title_justify="left")
    for column, justify in (("format", "left"), ("status", "left"), ("takes", "left"), ("size", "right"),
                            ("max |diff|", "right"), ("agreement", "right"), ("ms/sample @1", "right"),
                            ("@256", "right"), ("path", "left")):
        table.add_column(column, justify=justify)
    for name, entry in report.get("formats", {}).items():
        if not isinstance(entry, dict):
            continue
        latency = entry.get("latency_ms_per_sample") or {}
        status = entry.get("status", "?")
        table.add_row(name, f"[{'green' if status == 'ok' else 'red'}]{status}[/]", escape(str(entry.get("takes", ""))),
                      f"{entry['bytes'] / 1024:,.0f} KiB" if isinstance(entry.get("bytes"), int) else "",
                      f"{entry['max_abs_diff']:.2g}" if isinstance(entry.get("max_abs_diff"), float) else "",
                      number(entry.get("agreement")), number(latency.get("1")), number(latency.get("256")),
                      escape(str(entry.get("path", entry.get("error", "")))))
    reference = report.get("reference") or {}
    latency = reference.get("latency_ms_per_sample") or {}
    if latency:
        table.add_row("(the model)", "", "", "", "", "", number(latency.get("1")), number(latency.get("256")),
                      escape(str(reference.get("runtime", ""))), style="dim")
    return table


STATUS_STYLES = {
    "completed": "green", "running": "cyan", "failed": "red", "killed": "red",
    "interrupted": "yellow", "incomplete": "dim",
}
# Tables in logs and pipes: wide enough that ids and numbers never wrap.
PLAIN_WIDTH = 200


def console() -> Console:
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, PLAIN_WIDTH)
    return console


class Facts:
    """Key-value lines (`key   value`), keys in bold; no trailing padding in logs."""

    def __init__(self):
        self.rows: list[tuple[str, Text]] = []

    def add_row(self, key: str, value) -> None:
        self.rows.append((key, value if isinstance(value, Text) else Text.from_markup(str(value))))

    def __rich__(self):
        from rich.console import Group

        width = max((len(key) for key, _ in self.rows), default=0)
        return Group(*[Text.assemble((key.ljust(width), "bold"), "  ", value) for key, value in self.rows])


def show_duration(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def show_when(iso) -> str:
    return str(iso)[:19].replace("T", " ") if iso else "—"


def show_epochs(row: dict) -> str:
    done, total = row.get("epochs_run"), row.get("epochs")
    if done is None and total is None:
        return "—"
    return f"{'?' if done is None else done}/{'?' if total is None else total}"


def show_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def show_value(value) -> str:
    """A config value in a cell: scalars as YAML writes them, lists and maps in flow style."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import yaml

        return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return str(value)




AS_PROGRAM = False  # True when run as the `dlcli` program, not through Typer's test runner
