"""The options commands share, each declared once: `--set`, `--runs-dir`, `--json`,
`--quiet`, `--debug`, `--backend`, and a run's argument.

`--json` and `--debug` also tell the command wrapper (`dlcli.cli.program.command`) what they
are set to, through the click context, so a command function's parameters may be named as
it likes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlcli.errors import ConfigError, Problem

JSON_FLAG, DEBUG_FLAG = "dlcli.json", "dlcli.debug"  # their keys in the click context's `meta`


def _flag(key: str):
    """An option callback that records the option's value in the click context's `meta`."""

    def remember(ctx: typer.Context, value: bool) -> bool:
        ctx.meta[key] = bool(value)
        return value

    return remember


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config key: --set training.epochs=3 (dotted path, list index, YAML value).",
    ),
]
BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="tensorflow, jax or torch (default: the config's runtime.backend; auto: the fastest installed).",
        show_default=False,
    ),
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--runs-dir", envvar="DLCLI_RUNS_DIR", help="Where run folders live.", show_default="runs"
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        callback=_flag(JSON_FLAG),
        help="Print exactly one JSON object on stdout; logs go to stderr.",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")]
DebugOption = Annotated[
    bool, typer.Option("--debug", callback=_flag(DEBUG_FLAG), help="Show tracebacks.")
]
RunArgument = Annotated[
    str | None, typer.Argument(help="A run folder, its id under the runs dir, or 'latest'.")
]


def check_backend(value: str | None) -> str | None:
    """--backend's value, or a usage error naming the choices."""
    from dlcli.runtime.backend import BACKENDS

    choices = ("auto", *BACKENDS)
    if value is not None and value not in choices:
        from dlcli.errors import did_you_mean

        raise ConfigError(
            Problem(
                f"expected one of {', '.join(choices)}, got '{value}'{did_you_mean(value, choices)}",
                where="--backend",
            )
        )
    return value
