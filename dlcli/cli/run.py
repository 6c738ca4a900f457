"""The commands that train and use a model: train, evaluate, predict, validate.

Each parses its options, calls `dlcli.training.session` / `dlcli.use.evaluate`, and prints the
result (a rich table on stderr, the run's path or one JSON object on stdout).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dlcli.cli.options import (
    BackendOption,
    DebugOption,
    JsonOption,
    QuietOption,
    RunArgument,
    RunsDirOption,
    SetOption,
    check_backend,
)
from dlcli.cli.program import (
    command,
    emit_json,
    emit_result,
    err,
    out,
    print_result,
    require_stdout,
    write_stdout,
)
from dlcli.cli.render import console, cv_table, exports_table, metrics_table


@command
def train(
    config: Annotated[
        Path | None,
        typer.Argument(help="The YAML config (optional with --resume).", show_default=False),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Continue RUN in place from its last completed epoch."),
    ] = None,
    set_: SetOption = None,
    runs_dir: RunsDirOption = None,
    coordinator: Annotated[
        str | None,
        typer.Option(
            "--coordinator",
            envvar="DLCLI_COORDINATOR",
            rich_help_panel="Several processes (JAX)",
            help="HOST:PORT of process 0, where the processes of one run meet.",
        ),
    ] = None,
    num_processes: Annotated[
        int | None,
        typer.Option(
            "--num-processes",
            envvar="DLCLI_NUM_PROCESSES",
            rich_help_panel="Several processes (JAX)",
            help="How many processes train the run together.",
        ),
    ] = None,
    process_id: Annotated[
        int | None,
        typer.Option(
            "--process-id",
            envvar="DLCLI_PROCESS_ID",
            rich_help_panel="Several processes (JAX)",
            help="This process: 0 (writes the run folder) to N-1.",
        ),
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Validate, build, compile, fit and evaluate CONFIG; print the run folder's path."""
    from dlcli.errors import ConfigError
    from dlcli.training.distributed import Group, supervised
    from dlcli.training.session import train as train_run

    if config is None and resume is None:
        raise ConfigError("give a CONFIG to train, or --resume RUN to continue one")
    group = Group.from_options(coordinator, num_processes, process_id)
    code = supervised(
        group, sys.argv[1:], debug
    )  # several processes: this one watches a worker that trains
    if code is not None:
        raise typer.Exit(code)
    stderr = err()
    result = train_run(
        str(config) if config else None,
        overrides=set_ or [],
        runs_dir=runs_dir,
        console=stderr,
        progress=not quiet,
        rich_bar=stderr.is_terminal,
        command=" ".join(["dlcli", *sys.argv[1:]]),
        resume=resume,
        group=group,
    )
    if not group.leads:
        if not quiet:
            stderr.print(
                f"process {group.index} of {group.count}: done (process 0 writes the run folder)"
            )
        return
    _print_trained(result, as_json, quiet)


def _print_trained(result, as_json: bool, quiet: bool) -> None:
    stderr = err()
    if as_json:
        emit_result(
            {
                "run": str(result.run.path),
                "id": result.run.id,
                "status": "completed",
                **result.metrics,
            }
        )
        return
    if not quiet:
        m = result.metrics
        stderr.print(
            metrics_table(
                f"{result.run.id}: best epoch {m['best_epoch']} of {m['epochs_run']}",
                {"train": m["train"], "val": m["val"], "test": m["test"]},
                m.get("baselines"),
            )
        )
    print_result(f"{result.run.path}\n")


@command
def evaluate(
    run: RunArgument = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    data: Annotated[
        Path | None,
        typer.Option(help="A CSV/NPZ file with features and targets instead of a split."),
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option("--fail-under", help="METRIC=VALUE: exit 3 if the metric is lower."),
    ] = None,
    fail_over: Annotated[
        list[str] | None,
        typer.Option("--fail-over", help="METRIC=VALUE: exit 3 if the metric is higher (loss)."),
    ] = None,
    backend: BackendOption = None,
    allow_changed_data: Annotated[
        bool,
        typer.Option(
            "--allow-changed-data",
            help="Split a data file that changed since training anew (scored with the run's "
            "own preprocessing) instead of refusing.",
        ),
    ] = False,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Evaluate a run's saved model (default: the newest run) and append it to evaluations.jsonl."""
    from dlcli.use.evaluate import evaluate as evaluate_run
    from dlcli.use.evaluate import parse_gate

    for text in [*(fail_under or []), *(fail_over or [])]:
        parse_gate(text)  # a malformed gate is a usage error before any work
    entry = evaluate_run(
        run,
        split=split,
        data=str(data) if data else None,
        runs_dir=runs_dir,
        fail_under=fail_under or [],
        fail_over=fail_over or [],
        backend=check_backend(backend),
        allow_changed_data=allow_changed_data,
    )
    failures = entry.pop("gate_failures", [])
    if "warning" in entry:
        err().print(f"[yellow]warning:[/] {escape(entry['warning'])}")
    if not as_json and not quiet:
        label = entry.get("split") or entry.get("data")
        out().print(
            metrics_table(
                f"evaluation on {label} ({entry['samples']} samples)", {label: entry["metrics"]}
            )
        )
    if failures:
        from dlcli.errors import GateFailed

        raise GateFailed("gate not met: " + "; ".join(failures), payload={**entry, "passed": False})
    if as_json:
        emit_json({**entry, "passed": True})


@command
def predict(
    run: Annotated[str, typer.Argument(help="A run folder, its id, or 'latest'.")],
    input: Annotated[
        Path,
        typer.Argument(help="Raw rows in the training table's form, or a CSV/NPZ of features."),
    ],
    proba: Annotated[
        bool, typer.Option("--proba", help="Add one probability column per class.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the CSV here instead of stdout.")
    ] = None,
    backend: BackendOption = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """Predict labels (or values) for a file of raw features with a run's model."""
    from dlcli.files import write_output
    from dlcli.use.evaluate import predict as predict_run
    from dlcli.use.evaluate import to_csv

    if output is None:
        require_stdout("give --output FILE")
    predicted = predict_run(
        run, str(input), proba=proba, runs_dir=runs_dir, backend=check_backend(backend)
    )
    rows = predicted.rows
    if predicted.warning:
        err().print(f"[yellow]warning:[/] {escape(predicted.warning)}")
    if output is not None:
        write_output(output, to_csv(rows))
    if as_json:
        emit_json(
            {
                "run": str(run),
                "count": len(rows),
                "predictions": rows,
                **({"unseen": predicted.unseen} if predicted.unseen else {}),
                **({"output": str(output)} if output else {}),
            }
        )
    elif output is None:
        write_stdout(to_csv(rows))
    else:
        err().print(f"wrote {len(rows)} predictions to {output}")


@command
def validate(
    config: Annotated[Path, typer.Argument(help="The YAML config.", show_default=False)],
    set_: SetOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Check CONFIG and build its model without training: every problem, or the layer table."""
    from dlcli.model.build import layer_table, parameter_counts
    from dlcli.training.class_weight import recorded
    from dlcli.training.prepare import prepare

    prepared = prepare(str(config), set_ or [])
    rows, counts = layer_table(prepared.model), parameter_counts(prepared.model)
    weights = recorded(prepared.class_weight, prepared.data.labels)
    if as_json:
        preprocessing = prepared.data.preprocessing
        emit_json(
            {
                "valid": True,
                "layers": rows,
                "parameters": counts,
                "data": prepared.data.summary(),
                **({"preprocessing": preprocessing.to_json()} if preprocessing is not None else {}),
                **({"class_weight": weights} if weights is not None else {}),
                "config": prepared.config.to_dict(),
            }
        )
        return
    if quiet:
        return
    table = Table(title=f"{prepared.config.name}: {config} is valid", title_justify="left")
    for column, justify in (
        ("layer", "left"),
        ("type", "left"),
        ("output shape", "left"),
        ("params", "right"),
    ):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(row["name"], row["type"], row["output_shape"], f"{row['params']:,}")
    stdout = out()
    if prepared.data.preprocessing is not None:
        stdout.print(_columns_table(prepared.data.preprocessing))
    stdout.print(table)
    stdout.print(
        f"total parameters: {counts['total']:,}   trainable: {counts['trainable']:,}   "
        f"non-trainable: {counts['non_trainable']:,}"
    )
    if weights is not None:
        shown = ", ".join(f"{escape(label)} {weight:.4g}" for label, weight in weights.items())
        stdout.print(f"class weights in the training loss: {shown}")


def _columns_table(preprocessing) -> Table:
    """A table's features as the run will encode them (what preprocessing.json records)."""
    table = Table(
        title=f"features (fitted on the training split; target: {preprocessing.target})",
        title_justify="left",
    )
    for column, justify in (
        ("column", "left"),
        ("type", "left"),
        ("encoding", "left"),
        ("missing", "right"),
    ):
        table.add_column(column, justify=justify)
    for f in preprocessing.features:
        if f.type == "numeric":
            detail = f"mean {f.mean:.4g}, std {f.std:.4g}, {f.min:.4g} to {f.max:.4g}"
        elif f.type == "text":
            text = preprocessing.text
            words = ", ".join(text.vocabulary[:4]) + (", ..." if len(text.vocabulary) > 4 else "")
            detail = f"{text.output_mode} over {text.width} tokens (unknown first): {words}"
        else:
            shown = ", ".join(f.categories[:4]) + (", ..." if len(f.categories) > 4 else "")
            kind = f"embedding ({f.embedding_dim})" if f.encoding == "embedding" else "one-hot"
            detail = f"{kind} of {len(f.categories)} + unknown: {shown}"
        table.add_row(escape(f.name), f.type, escape(detail), f"{f.missing:,}")
    return table


@command
def export(
    run: RunArgument = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="saved_model, onnx, litert or keras (repeatable); default: every one this machine can make.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the copies and exports.json here instead of into the run folder.",
        ),
    ] = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Write deployable copies of a run's model and check each one against the model on the test split."""
    from dlcli.errors import RunFailed
    from dlcli.use.export import export_run, failure_line

    stderr = err()
    report = export_run(
        run,
        formats or [],
        output,
        runs_dir,
        progress=None
        if (quiet or as_json)
        else (lambda text: stderr.print(f"[dim]{escape(text)}[/]")),
    )
    for name, why in (report.get("skipped") or {}).items():
        stderr.print(f"[yellow]skipped {name}:[/] {escape(why)}")
    if as_json:
        failure = failure_line(report)
        if failure:
            raise RunFailed(failure, payload=report)
        emit_json(report)
        return
    if not quiet:
        console().print(exports_table(report))
    failure = failure_line(report)
    if failure:
        raise RunFailed(failure, payload=report)


@command
def sweep(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="A YAML config with a sweep: section (optional with --resume).", show_default=False
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", min=1, help="Trials this process runs (default: sweep.trials)."),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            "--parallel",
            min=1,
            help="Trials at once on this machine, each on its share of the cores (default: sweep.parallel).",
        ),
    ] = None,
    set_: SetOption = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            envvar="DLCLI_STORAGE",
            help="A database several sweeps share: sqlite:///PATH or postgresql://USER@HOST/DB (default: SQLite in the sweep folder).",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Carry SWEEP on: keep its finished trials, run the rest."),
    ] = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """Search CONFIG's sweep.space: each trial a run folder inside the sweep folder; print the sweep's path."""
    from dlcli.tuning.sweep import run_sweep

    stderr = err()
    result = run_sweep(
        str(config) if config else None,
        set_ or [],
        runs_dir,
        trials=trials,
        parallel=parallel,
        storage=storage,
        resume=resume,
        console=stderr,
        progress=not quiet and not as_json,
    )
    if as_json:
        emit_result(result.summary())
        return
    if not quiet and result.best is not None:
        best = result.best
        stderr.print(
            f"best: trial {best['trial']}, {result.record['metric']} {best['value']:.6g}  "
            + "  ".join(f"{k}={v}" for k, v in best["params"].items()),
            highlight=False,
        )
    print_result(f"{result.folder.path}\n")


@command
def cv(
    config: Annotated[
        Path | None,
        typer.Argument(help="A YAML config (optional with --resume).", show_default=False),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            "--folds",
            help="K: the training data cut into K folds, each held out once (default 5).",
        ),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            "--parallel",
            min=1,
            help="Folds at once on this machine, each on its share of the cores (default 1).",
        ),
    ] = None,
    set_: SetOption = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Carry CV on: keep its completed folds, run the rest."),
    ] = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
):
    """K-fold cross-validation of CONFIG: one run folder per fold inside the cv folder, the mean and spread of every metric; print the cv's path."""
    from dlcli.tuning.cv import run_cv

    stderr = err()
    result = run_cv(
        str(config) if config else None,
        set_ or [],
        runs_dir,
        folds=folds,
        parallel=parallel,
        resume=resume,
        console=stderr,
        progress=not quiet and not as_json,
    )
    if as_json:
        emit_result(result.summary())
        return
    if not quiet:
        stderr.print(cv_table(result.record.to_json()))
    print_result(f"{result.folder.path}\n")
