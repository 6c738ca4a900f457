"""The `dlcli` command: one table of subcommands over the library.

The CLI parses arguments, calls the library and formats the result (rich or JSON); it holds
no training logic, and the same library calls serve `import dlcli` users. Errors the
library raises on purpose become one line on stderr (and `{"error": ...}` with `--json`)
and their exit code: 1 run failed, 2 usage or config error, 3 gate not met, 130
interrupted; `--debug` adds the traceback (`dlcli.cli.program.command`).

- `options`: the options commands share; `program`: running a command (errors, `--json`,
  streams, signals); `render`: tables and formats; `child`: the entry of the processes dlcli
  starts itself.
- A new command: a function in `run.py` (it trains or uses a model), `serve.py` (serving) or
  `manage.py` (it reads run folders or the environment), and a row in `COMMANDS`.

Imports every stage; no stage imports it.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer

from dlcli.cli import manage
from dlcli.cli import run as commands
from dlcli.cli.program import Program
from dlcli.cli.serve import serve

app = typer.Typer(
    name="dlcli",
    help="Train Keras models from YAML files; every run lands in a folder you can trust.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = {
    "train": commands.train,
    "evaluate": commands.evaluate,
    "predict": commands.predict,
    "validate": commands.validate,
    "export": commands.export,
    "serve": serve,
    "sweep": commands.sweep,
    "cv": commands.cv,
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
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = None,
) -> None:
    """Train Keras models from YAML files; every run lands in a folder you can trust."""


def main() -> None:
    """Console-script entry point: the command line, in a `Program`."""
    end(run_program(Program().start()))


def run_program(program: Program) -> int:
    """Run this process's command line as `program`; the exit code."""
    try:
        app(obj=program)
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def end(code: int) -> NoReturn:
    """End the process with `code`, here rather than through Python's shutdown, which puts
    the default SIGTERM action back (exit 143 in the middle of a backend's slow teardown) and
    adds nothing: every file is written and closed, and the result printed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


__all__ = ["COMMANDS", "app", "end", "main", "run_program"]
