"""The `dlcli` command: one table of subcommands over the library.

The CLI parses arguments, calls the library and formats the result (rich or JSON); it holds
no training logic, and the same library calls serve `import dlcli` users. Errors the
library raises on purpose become one line on stderr (and `{"error": ...}` with `--json`)
and their exit code: 1 run failed, 2 usage or config error, 3 gate not met, 130
interrupted; `--debug` adds the traceback (`dlcli.cli.common.command`).

A new command: a function in `run.py` (it trains or uses a model) or `manage.py` (it reads
run folders or the environment), and a row in `COMMANDS`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from dlcli.cli import common, manage, run
from dlcli.training import handoff
from dlcli.training.signals import follow_parent

app = typer.Typer(
    name="dlcli",
    help="Train Keras models from YAML files; every run lands in a folder you can trust.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = {
    "train": run.train,
    "evaluate": run.evaluate,
    "predict": run.predict,
    "validate": run.validate,
    "export": run.export,
    "sweep": run.sweep,
    "runs": manage.runs_command,
    "show": manage.show_command,
    "compare": manage.compare_command,
    "init": manage.init_command,
    "schema": manage.schema_command,
    "env": manage.env_command,
}
for _name, _function in COMMANDS.items():
    app.command(_name)(_function)


def _print_version(value: bool) -> None:
    if value:
        from dlcli import __version__

        typer.echo(f"dlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool | None, typer.Option(
        "--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Train Keras models from YAML files; every run lands in a folder you can trust."""


def main() -> None:
    """Console-script entry point."""
    common.AS_PROGRAM = True
    common.reserve_standard_streams()
    common.install_program_signals()
    follow_parent()
    if handoff.current.preload is not None:  # a sweep's spare trial process (dlcli.cli.child)
        from dlcli.tuning.sweep import await_trial

        await_trial()
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    # End here rather than through Python's shutdown, which puts the default SIGTERM action
    # back (exit 143 in the middle of a backend's slow teardown) and adds nothing: every file
    # is written and closed, and the result printed.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


__all__ = ["COMMANDS", "app", "main"]
