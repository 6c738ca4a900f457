"""The `dlcli` command: parse arguments, call the library, format the result.

No training logic lives here. Each command is a small function over `dlcli.training`,
`dlcli.evaluation` and friends; errors the library raises on purpose become one line on
stderr (and `{"error": ...}` with `--json`) and their exit code: 1 run failed, 2 usage or
config error, 3 gate not met, 130 interrupted. `--debug` adds the traceback.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dlcli.errors import EXIT_INTERRUPTED, DlcliError

app = typer.Typer(
    name="dlcli",
    help="Train Keras models from YAML files; every run lands in a folder you can trust.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set training.epochs=3 (dotted path, list index, YAML value)."),
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", envvar="DLCLI_RUNS_DIR", help="Where run folders live.", show_default="runs"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout; logs go to stderr.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
RunArgument = Annotated[str | None, typer.Argument(help="A run folder, its id under the runs dir, or 'latest'.")]


def _out() -> Console:
    return Console(soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _emit_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def command(func):
    """Run a command; turn dlcli's own errors into one line and their exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        as_json, debug = kwargs.get("as_json", False), kwargs.get("debug", False)
        saved = os.environ.get("DLCLI_DEBUG")
        if debug:
            os.environ["DLCLI_DEBUG"] = "1"
        try:
            return func(*args, **kwargs)
        except DlcliError as exc:
            if debug:
                traceback.print_exc()
            _fail(str(exc), exc.exit_code, as_json, exc.payload)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED, as_json)
        finally:
            if debug and saved is None:
                os.environ.pop("DLCLI_DEBUG", None)

    return wrapper


def _fail(message: str, code: int, as_json: bool, payload: dict | None = None):
    if code == EXIT_INTERRUPTED:
        # The run folder already says `interrupted`: a second Ctrl-C must not turn the exit
        # into a traceback, and the user asked to stop, so skip TensorFlow's slow teardown.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    err = _err()
    lines = message.splitlines() or [message]
    from rich.markup import escape

    for line in lines:
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
    if as_json:
        _emit_json({**(payload or {}), "error": message, "errors": lines, "exit_code": code})
    if code == EXIT_INTERRUPTED and _AS_PROGRAM:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def _metrics_table(title: str, sections: dict[str, dict]) -> Table:
    """One row per split (train/val/test, or an evaluation), one column per metric."""
    from rich.markup import escape

    names = list(dict.fromkeys(name for values in sections.values() if values for name in values))
    table = Table(title=escape(title), title_justify="left")
    table.add_column("split")
    for name in names:
        table.add_column(escape(name), justify="right", no_wrap=True)
    for split, values in sections.items():
        if values:
            table.add_row(escape(str(split)), *[_number(values.get(n)) for n in names])
    return table


def _number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"


@app.command()
@command
def train(
    config: Annotated[Path | None, typer.Argument(help="The YAML config (optional with --resume).", show_default=False)] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue RUN in place from its last completed epoch.")] = None,
    set_: SetOption = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Validate, build, compile, fit and evaluate CONFIG; print the run folder's path."""
    from dlcli.errors import ConfigError
    from dlcli.training import train as train_run

    if config is None and resume is None:
        raise ConfigError("give a CONFIG to train, or --resume RUN to continue one")
    err = _err()
    result = train_run(
        str(config) if config else None, overrides=set_ or [], runs_dir=runs_dir, console=err,
        progress=not quiet, rich_bar=err.is_terminal, command=" ".join(["dlcli", *sys.argv[1:]]),
        resume=resume,
    )
    if as_json:
        _emit_json({"run": str(result.run.path), "id": result.run.id, "status": "completed", **result.metrics})
        return
    if not quiet:
        m = result.metrics
        err.print(_metrics_table(f"{result.run.id}: best epoch {m['best_epoch']} of {m['epochs_run']}",
                                 {"train": m["train"], "val": m["val"], "test": m["test"]}))
    print(result.run.path)


@app.command()
@command
def evaluate(
    run: RunArgument = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    data: Annotated[Path | None, typer.Option(help="A CSV/NPZ file with features and targets instead of a split.")] = None,
    fail_under: Annotated[list[str] | None, typer.Option("--fail-under", help="METRIC=VALUE: exit 3 if the metric is lower.")] = None,
    fail_over: Annotated[list[str] | None, typer.Option("--fail-over", help="METRIC=VALUE: exit 3 if the metric is higher (loss).")] = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Evaluate a run's saved model (default: the newest run) and append it to evaluations.jsonl."""
    from dlcli.evaluation import evaluate as evaluate_run
    from dlcli.evaluation import parse_gate

    for text in [*(fail_under or []), *(fail_over or [])]:
        parse_gate(text)  # a malformed gate is a usage error before any work
    entry = evaluate_run(run, split=split, data=str(data) if data else None, runs_dir=runs_dir,
                         fail_under=fail_under or [], fail_over=fail_over or [])
    failures = entry.pop("gate_failures", [])
    if "warning" in entry:
        from rich.markup import escape

        _err().print(f"[yellow]warning:[/] {escape(entry['warning'])}")
    if not as_json and not quiet:
        label = entry.get("split") or entry.get("data")
        _out().print(_metrics_table(f"evaluation on {label} ({entry['samples']} samples)", {label: entry["metrics"]}))
    if failures:
        from dlcli.errors import GateFailed

        raise GateFailed("gate not met: " + "; ".join(failures), payload={**entry, "passed": False})
    if as_json:
        _emit_json({**entry, "passed": True})


@app.command()
@command
def predict(
    run: Annotated[str, typer.Argument(help="A run folder, its id, or 'latest'.")],
    input: Annotated[Path, typer.Argument(help="A CSV (feature columns by name) or NPZ (array 'x') of features.")],
    proba: Annotated[bool, typer.Option("--proba", help="Add one probability column per class.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the CSV here instead of stdout.")] = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """Predict labels (or values) for a file of raw features with a run's model."""
    from dlcli.evaluation import predict as predict_run
    from dlcli.evaluation import to_csv
    from dlcli.runfolder import atomic_write

    rows = predict_run(run, str(input), proba=proba, runs_dir=runs_dir)
    if output is not None:
        atomic_write(output, to_csv(rows))
    if as_json:
        _emit_json({"run": str(run), "count": len(rows), "predictions": rows,
                    **({"output": str(output)} if output else {})})
    elif output is None:
        sys.stdout.write(to_csv(rows))
    else:
        _err().print(f"wrote {len(rows)} predictions to {output}")


@app.command()
@command
def validate(
    config: Annotated[Path, typer.Argument(help="The YAML config.", show_default=False)],
    set_: SetOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Check CONFIG and build its model without training: every problem, or the layer table."""
    from dlcli.model import layer_table, parameter_counts
    from dlcli.training import prepare

    prepared = prepare(str(config), set_ or [])
    rows, counts = layer_table(prepared.model), parameter_counts(prepared.model)
    if as_json:
        _emit_json({"valid": True, "layers": rows, "parameters": counts, "data": prepared.data.summary(),
                    "config": prepared.config.to_dict()})
        return
    if quiet:
        return
    table = Table(title=f"{prepared.config.name}: {config} is valid", title_justify="left")
    for column, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right")):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(row["name"], row["type"], row["output_shape"], f"{row['params']:,}")
    out = _out()
    out.print(table)
    out.print(f"total parameters: {counts['total']:,}   trainable: {counts['trainable']:,}   "
              f"non-trainable: {counts['non_trainable']:,}")


_AS_PROGRAM = False  # True when run as the `dlcli` program, not through Typer's test runner


def main() -> None:
    """Console-script entry point."""
    global _AS_PROGRAM
    _AS_PROGRAM = True
    app()


# Run management and the everyday commands (runs, show, compare, init, schema, env).
from dlcli import cli_manage  # noqa: F401  (registers its commands on `app`)

if __name__ == "__main__":
    main()
