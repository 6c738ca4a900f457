"""Running a command: its errors as one line and an exit code, `--json`'s one object, the
standard streams, and what a signal does to the `dlcli` program.

A command is a plain function with typed parameters, wrapped in `command`; the work happens
in library calls. Errors dlcli raises on purpose become one line on stderr (and
`{"error": ...}` under `--json`) and their exit code: 1 run failed, 2 usage or config error,
3 gate not met, 130 interrupted; `--debug` adds the traceback.

`Program` is the `dlcli` process itself (`dlcli.cli.main` makes one and hands it to Typer as
the context's `obj`): it gives closed standard streams /dev/null, and its SIGINT/SIGTERM
handler ends the process at once. Run in-process instead (Typer's test runner, a notebook),
a command has no `Program`: signals then raise, as they do in training.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import signal
import sys
import traceback

import typer
from rich.console import Console
from rich.markup import escape

from dlcli.cli.options import DEBUG_FLAG, JSON_FLAG
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
from dlcli.training.signals import Terminated, follow_parent, main_thread, signals_raise


class Program:
    """The `dlcli` program: its standard streams, its signal handler, and the command under way."""

    def __init__(self):
        self.closed_streams: set[int] = (
            set()
        )  # 0, 1, 2: closed when dlcli started (`>&-`), now /dev/null
        self.as_json = False  # the command under way prints one JSON object
        self.done = False  # the command's result is out
        self.printing = False  # the result is being written
        self.deferred: int | None = None  # a signal that came while it was

    def start(self) -> Program:
        """Reserve the standard streams, take SIGINT/SIGTERM, and follow a parent sweep."""
        self.reserve_standard_streams()
        if main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.on_signal)
        follow_parent()
        return self

    def reserve_standard_streams(self) -> None:
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
            self.closed_streams.add(fd)
            mode = "r" if fd == 0 else "w"
            stream = open(fd, mode, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115 - kept for the process's life
            setattr(sys, name, stream)

    def on_signal(self, signum, frame) -> None:
        """SIGINT/SIGTERM outside an open run folder (training installs its own handler,
        `dlcli.training.signals`): the work so far is only in memory, so end now with 130 (one
        line, and the JSON object under --json), or with 0 once the result is out."""
        if self.done:
            os._exit(0)
        if self.printing and self.deferred is None:  # the result first; a second signal ends now
            self.deferred = signum
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stderr.flush()
        # fd 2 may be hushed while a backend imports; dlcli.runtime.keras_import may be half-imported
        quieted = getattr(sys.modules.get("dlcli.runtime.keras_import"), "REAL_STDERR", [])
        os.write(
            quieted[-1] if quieted else 2, b"error: interrupted\n"
        )  # plain: rich may be half-imported
        if self.as_json:
            with contextlib.suppress(DlcliError):
                emit_json(
                    {
                        "error": "interrupted",
                        "errors": ["interrupted"],
                        "exit_code": EXIT_INTERRUPTED,
                    }
                )
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


_RUNNING: contextvars.ContextVar[Program | None] = contextvars.ContextVar(
    "dlcli_program", default=None
)
CONTEXT = (
    "dlcli_context"  # the parameter `command` adds, through which Typer hands over its context
)


def current_program() -> Program | None:
    """The `Program` running the command under way (None in-process)."""
    return _RUNNING.get()


def out() -> Console:
    return Console(soft_wrap=True)


def err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def emit_json(data: dict) -> None:
    write_stdout(json_text(data) + "\n")


def print_result(text: str) -> None:
    """The command's result, its last word on standard output. A signal that comes while it
    is being written waits for it; from then on a signal ends the process with 0, as the
    result stands (the command has nothing left to do)."""
    program = current_program()
    if program is None:
        write_stdout(text)
        return
    program.printing = True
    try:
        write_stdout(text)
    finally:
        program.printing = False
    program.done = True
    if program.deferred is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os._exit(0)


def emit_result(data: dict) -> None:
    """`print_result` for the one JSON object of --json."""
    print_result(json_text(data) + "\n")


def write_stdout(text: str) -> None:
    """A command's result on standard output; a full disk or a closed pipe there is a
    failure of the run (exit 1) in one line, as for any file dlcli writes."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        raise RunFailed(
            f"cannot write to standard output: {exc.strerror or first_line(exc)}"
        ) from None


def require_stdout(fix: str) -> None:
    """A usage error, before any work, when the command's result goes to a standard output
    that was closed: it would be lost."""
    program = current_program()
    if program is not None and 1 in program.closed_streams:
        raise ConfigError(
            Problem(f"standard output is closed (>&-), so the result would be lost; {fix}")
        )


def command(func):
    """Run a command; turn dlcli's own errors into one line and their exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = kwargs.pop(CONTEXT, None)
        flags = ctx.meta if ctx is not None else {}
        as_json, debug = bool(flags.get(JSON_FLAG)), bool(flags.get(DEBUG_FLAG))
        root = ctx.find_root().obj if ctx is not None else None
        program = root if isinstance(root, Program) else None
        if program is not None:
            program.as_json, program.done = as_json, False
        running = _RUNNING.set(program)
        saved = os.environ.get("DLCLI_DEBUG")
        if debug:
            os.environ["DLCLI_DEBUG"] = "1"
        try:
            if as_json:
                require_stdout("leave it open for --json, or drop --json")
            if program is not None:
                result = func(*args, **kwargs)
            else:  # in-process (tests, notebooks): signals raise as they do in training
                with signals_raise():
                    result = func(*args, **kwargs)
            _done(program)
            return result
        except DlcliError as exc:
            if debug:
                traceback.print_exc()
            _fail(str(exc), exc.exit_code, as_json, program, exc.payload)
        except (KeyboardInterrupt, Terminated):
            _fail("interrupted", EXIT_INTERRUPTED, as_json, program)
        except OSError as exc:  # a full disk, a read-only folder: the cause in one line
            if debug:
                traceback.print_exc()
            _fail(io_error(exc), EXIT_FAILED, as_json, program)
        finally:
            _RUNNING.reset(running)
            if debug and saved is None:
                os.environ.pop("DLCLI_DEBUG", None)

    # Typer hands its context to a parameter annotated `typer.Context`: one more, for the wrapper.
    signature = inspect.signature(func, eval_str=True)
    extra = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])
    wrapper.__annotations__ = {
        **{name: p.annotation for name, p in signature.parameters.items()},
        CONTEXT: typer.Context,
    }
    return wrapper


def _done(program: Program | None) -> None:
    """The command's work is done and printed: a signal from here on (while the backends
    tear down) ends the process with exit 0, as the result stands."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise RunFailed(
            f"cannot write to standard output: {exc.strerror or first_line(exc)}"
        ) from None
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    if program is not None:
        program.done = True


def _fail(
    message: str, code: int, as_json: bool, program: Program | None, payload: dict | None = None
):
    if code == EXIT_INTERRUPTED and program is not None:
        # The run folder already says `interrupted`: a second Ctrl-C must not turn the exit
        # into a traceback, and the user asked to stop, so skip TensorFlow's slow teardown.
        # (In-process, the caller's signals stay its own: the processes it starts later
        # would inherit the ignoring.)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    stderr = err()
    lines = message.splitlines() or [message]
    for line in lines:
        stderr.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
    if as_json and not (program is not None and 1 in program.closed_streams):
        with contextlib.suppress(DlcliError):  # stdout failing too: the line on stderr stands
            emit_json({**(payload or {}), "error": message, "errors": lines, "exit_code": code})
    if code == EXIT_INTERRUPTED and program is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


__all__ = [
    "Program",
    "command",
    "current_program",
    "emit_json",
    "err",
    "out",
    "require_stdout",
    "write_stdout",
]
