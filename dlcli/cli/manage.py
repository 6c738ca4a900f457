"""The everyday commands around training: runs, show, compare, init, schema, env.

Thin adapters over `dlcli.runs.catalog`, `dlcli.init.templates`, `dlcli.config.schema.config_schema` and
`dlcli.runtime.environment.environment`: parse the options, call the library, print a rich table (or
one JSON object with `--json`). None of them but `env` imports TensorFlow or Keras, so they
answer at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dlcli.cli.groups import cv_line, folder_facts, show_cv, show_sweep, sweep_line
from dlcli.cli.options import DebugOption, JsonOption, RunArgument, RunsDirOption
from dlcli.cli.program import command, emit_json, err, require_stdout, write_stdout
from dlcli.cli.render import (
    Facts,
    RowsTable,
    console,
    exports_table,
    metrics_table,
    number,
    show_duration,
    show_epochs,
    show_status,
    show_value,
    show_when,
)
from dlcli.errors import ConfigError, Problem
from dlcli.init import templates
from dlcli.runs import catalog
from dlcli.runs.runfolder import runs_dir_from


@command
def runs_command(
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            help="Best first by a metric: accuracy, test.accuracy, val_loss, ... (split default: test); "
            "or started, duration, name. Default: newest first.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Show only the first N runs.")
    ] = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """A table of the runs in the runs dir: status, start, duration, epochs, test metrics."""
    with catalog.no_collection():
        _runs(sort, limit, runs_dir_from(runs_dir), as_json)


def _runs(sort: str | None, limit: int | None, runs: Path, as_json: bool) -> None:
    """`dlcli runs`: the JSON object or the table."""
    shown, total = catalog.select_runs(runs, sort=sort, limit=limit)
    if as_json:
        emit_json({"runs_dir": str(runs), "total": total, "runs": shown})
        return
    if not total:
        err().print(f"no runs in {escape(str(runs))} yet; train one with `dlcli train CONFIG`")
        return
    metric_columns = list(
        dict.fromkeys(f"test.{name}" for row in shown for name in row["metrics"].get("test", {}))
    )
    if sort and sort not in catalog.RUN_FIELDS:
        split, name = catalog.parse_metric(sort)
        if f"{split}.{name}" not in metric_columns:
            metric_columns.insert(0, f"{split}.{name}")
    count = f"{len(shown)} of {total}" if len(shown) < total else str(total)
    title = f"{count} run{'s' if total != 1 else ''} in {runs}"
    if sort:
        title += f", sorted by {sort}"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("epochs", justify="right", no_wrap=True)
    for column in metric_columns:
        table.add_column(escape(column.replace(".", " ", 1)), justify="right", no_wrap=True)
    table.add_column("best epoch", justify="right", no_wrap=True)
    sweeps = any(row.get("kind") in ("sweep", "cv") for row in shown)
    if sweeps:
        table.add_column("sweep: best, trials / cv: mean ± std, folds", no_wrap=True)
    rows = []
    for row in shown:
        cells = [
            escape(row["id"]),
            escape(str(row["name"] or "—")),
            show_status(row["status"]),
            show_when(row["started"]),
            show_duration(row["duration_s"]),
        ]
        if row.get("kind") in ("sweep", "cv"):
            sweep = row["kind"] == "sweep"
            rows.append(
                [
                    *cells,
                    f"{sum(row['trials'].values())} trials" if sweep else f"{row['k']} folds",
                    *["" for _ in metric_columns],
                    "",
                    escape(sweep_line(row) if sweep else cv_line(row)),
                ]
            )
            continue
        rows.append(
            [
                *cells,
                show_epochs(row),
                *[number(catalog.metric_value(row, column)) for column in metric_columns],
                number(row["best_epoch"]),
                *([""] if sweeps else []),
            ]
        )
    console().print(RowsTable(table, rows))


@command
def show_command(
    run: RunArgument = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """One run (default: the newest): status, timings, config, final metrics, per-epoch history; or a sweep's trials, or a cv's folds."""
    if run not in (None, "", "latest") and (
        catalog.is_sweep(run) or catalog.is_sweep(runs_dir_from(runs_dir) / run)
    ):
        show_sweep(catalog.sweep_details(run, runs_dir), as_json)
        return
    if run not in (None, "", "latest") and (
        catalog.is_cv(run) or catalog.is_cv(runs_dir_from(runs_dir) / run)
    ):
        show_cv(catalog.cv_details(run, runs_dir), as_json)
        return
    details = catalog.run_details(run, runs_dir)
    if as_json:
        emit_json(
            {
                **{k: v for k, v in details.items() if k != "config_text"},
                "record": details["record"].to_json(),
            }
        )
        return
    out = console()
    record = details["record"]
    heading = Text.assemble((details["id"], "bold"), "  ", show_status(details["status"]))
    if details.get("recorded_status"):
        heading.append(
            f"  (run.json says {details['recorded_status']}; its process {record.pid} is gone)"
        )
    out.print(heading)
    facts = folder_facts(details)
    epochs = f"{show_epochs(details)}   best epoch {number(details['best_epoch'])}"
    if details["samples_per_s"] is not None:
        epochs += f"   {details['samples_per_s']:,} samples/s"
    facts.add_row("epochs", epochs)
    if record.command:
        facts.add_row("command", escape(record.command))
    data = record.data
    if data.source or data.task or data.samples:
        samples = ", ".join(
            f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in data.samples.items()
        )
        facts.add_row(
            "data", escape(", ".join(str(p) for p in (data.source, data.task, samples) if p))
        )
    if record.runtime:
        facts.add_row("runtime", escape(", ".join(f"{k} {v}" for k, v in record.runtime.items())))
    versions = record.versions
    if versions:
        parts = [
            f"dlcli {versions.get('dlcli')}",
            f"keras {versions.get('keras')}",
            f"{versions.get('backend')} {versions.get('backend_version') or ''}".strip(),
            f"python {versions.get('python')}",
        ]
        facts.add_row("versions", escape(", ".join(parts)))
    if record.resumes:
        facts.add_row("resumed", str(len(record.resumes)) + " time(s)")
    if record.mlflow:
        tracked = record.mlflow
        facts.add_row(
            "mlflow",
            escape(
                f"run {tracked.get('run_id') or '(none)'} in experiment "
                f"{tracked.get('experiment')!r} at {tracked.get('tracking_uri')}"
                + (f"; error: {tracked['error']}" if tracked.get("error") else "")
            ),
        )
    if details["error"]:
        facts.add_row("error", Text(str(details["error"]), style="red"))
    out.print(facts)
    if details["config_text"] is not None:
        out.print()
        out.print(Text("config.yaml", style="bold"))
        from rich.syntax import Syntax  # pygments: only `show` needs it

        out.print(
            Syntax(
                details["config_text"].rstrip("\n"),
                "yaml",
                theme="ansi_dark",
                background_color="default",
            )
        )
    metrics = details["metrics"]
    if metrics:
        out.print()
        out.print(
            metrics_table(
                "final metrics",
                {split: metrics.get(split) for split in ("train", "val", "test")},
                details["baselines"],
            )
        )
    if details["history"]:
        out.print()
        out.print(_history_table(details["history"], details["best_epoch"]))
    if details["evaluations"]:
        out.print()
        out.print(_evaluations_table(details["evaluations"]))
    if details.get("exports"):
        out.print()
        out.print(exports_table(details["exports"]))


def _history_table(history: list[dict], best_epoch) -> Table:
    columns = list(dict.fromkeys(k for row in history for k in row))
    table = Table(
        title=f"history ({len(history)} epochs" + (f", best {best_epoch})" if best_epoch else ")"),
        title_justify="left",
    )
    for column in columns:
        table.add_column(escape(column), justify="right", no_wrap=True)
    for row in history:
        cells = []
        for column in columns:
            value = row.get(column)
            if column == "lr" and isinstance(value, float):
                cells.append(f"{value:.3g}")
            elif column == "epoch_time_s" and isinstance(value, float):
                cells.append(f"{value:.2f}")
            else:
                cells.append(number(value))
        table.add_row(*cells, style="bold" if row.get("epoch") == best_epoch else None)
    return table


def _evaluations_table(entries: list[dict]) -> Table:
    names = list(dict.fromkeys(k for e in entries for k in (e.get("metrics") or {})))
    table = Table(title=f"evaluations ({len(entries)})", title_justify="left")
    table.add_column("time", no_wrap=True)
    table.add_column("on")
    for name in names:
        table.add_column(escape(name), justify="right", no_wrap=True)
    for entry in entries:
        where = entry.get("split") or entry.get("data") or "—"
        table.add_row(
            show_when(entry.get("time")),
            escape(str(where)),
            *[number((entry.get("metrics") or {}).get(n)) for n in names],
        )
    return table


@command
def compare_command(
    runs: Annotated[
        list[str],
        typer.Argument(help="Two or more runs: folders, ids, or 'latest'.", show_default=False),
    ],
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """Runs side by side: the config keys that differ, and the metrics with the best in bold."""
    result = catalog.compare_runs(runs, runs_dir)
    if as_json:
        emit_json(result)
        return
    out = console()
    plain = out.color_system is None  # no bold in logs and pipes: mark the best with '*'
    ids = [escape(row["id"]) for row in result["runs"]]
    if result["differences"]:
        table = Table(title="config differences", title_justify="left")
        table.add_column("key", no_wrap=True)
        for run_id in ids:
            table.add_column(run_id)
        for item in result["differences"]:
            table.add_row(escape(item["key"]), *[escape(show_value(v)) for v in item["values"]])
        out.print(table)
    else:
        out.print("the configs are identical")
    out.print()
    table = Table(
        title="metrics" + (" (* best)" if plain else " (best in bold)"), title_justify="left"
    )
    table.add_column("", no_wrap=True)
    for run_id in ids:
        table.add_column(run_id, justify="right", no_wrap=True)
    rows = result["runs"]
    table.add_row("status", *[show_status(r["status"]) for r in rows])
    table.add_row("epochs", *[show_epochs(r) for r in rows])
    table.add_row("best epoch", *[number(r["best_epoch"]) for r in rows])
    table.add_row("duration", *[show_duration(r["duration_s"]) for r in rows], end_section=True)
    for item in result["metrics"]:
        cells = []
        for index, value in enumerate(item["values"]):
            best = index in item["best"]
            cells.append(
                Text(number(value) + (" *" if best and plain else ""), style="bold" if best else "")
            )
        table.add_row(escape(item["metric"].replace(".", " ", 1)), *cells)
    if result["baselines"]:
        table.add_section()  # then each run's baselines: its test split without deep learning
    for item in result["baselines"]:
        label = f"{item['baseline'].replace('_', ' ')} baseline {item['metric']}"
        table.add_row(escape(label), *[number(v) for v in item["values"]], style="dim")
    out.print(table)


@command
def init_command(
    path: Annotated[
        str | None,
        typer.Argument(
            help="Where to write the config (a folder gets the file inside). Default: config.yaml; with --from-data, "
            "the data file's name with .yaml (census.csv -> census.yaml) in the current folder.",
            show_default=False,
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            "-t",
            help="The starter config (default: mlp); --list shows them.",
            show_default=False,
        ),
    ] = None,
    from_data: Annotated[
        str | None,
        typer.Option(
            "--from-data",
            metavar="FILE",
            help="Inspect this CSV or Parquet file (.parquet/.pq) and write a commented config fitted to it: "
            "its header, delimiter, column types, task and classes.",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="COL",
            help="With --from-data: the target column, by name or 0-based position (3, -1). Default: the last column.",
            show_default=False,
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the templates and exit.")] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite an existing file.")
    ] = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """Write a commented starter config (default: config.yaml from the 'mlp' template), or with
    --from-data FILE one fitted to a table file."""
    if list_:
        names = templates.templates()
        if as_json:
            emit_json({"templates": names})
            return
        table = Facts()
        for name, description in names.items():
            table.add_row(name, escape(description))
        console().print(table)
        return
    if from_data is not None:
        if template is not None:
            raise ConfigError(
                Problem("give --template or --from-data, not both", where="--template")
            )
        written, fitted = templates.write_from_data(from_data, path, target, force=force)
        if as_json:
            emit_json(
                {
                    "written": str(written),
                    "from_data": from_data,
                    "target": fitted.target,
                    "task": fitted.task,
                    "rows": fitted.rows,
                    "features": len(fitted.features),
                    **({"classes": fitted.classes} if fitted.classes is not None else {}),
                }
            )
            return
        print(written)
        media = {"image": "images", "text": "documents", "audio": "recordings"}
        if len(fitted.features) == 1 and fitted.features[0] in media:
            err().print(
                f"wrote a config for {escape(from_data)} ({fitted.rows:,} {media[fitted.features[0]]}, "
                f"{len(fitted.classes or [])} classes); next: dlcli validate {escape(str(written))} "
                f"&& dlcli train {escape(str(written))}",
                highlight=False,
            )
            return
        what = "regression"
        if fitted.classes is not None:
            what = f"classification, {len(fitted.classes)} class{'es' if len(fitted.classes) != 1 else ''}"
        err().print(
            f"wrote a config for {escape(from_data)} ({fitted.rows:,} rows, {len(fitted.features)} features, "
            f"target {escape(str(fitted.target))}: {what}); next: dlcli validate {escape(str(written))} && "
            f"dlcli train {escape(str(written))}",
            highlight=False,
        )
        return
    if target is not None:
        raise ConfigError(
            Problem(
                "--target goes with --from-data FILE (a config fitted to a table file); "
                "add --from-data, or drop --target"
            )
        )
    template = template or "mlp"
    written = templates.write_template(
        path if path is not None else "config.yaml", template, force=force
    )
    if as_json:
        emit_json({"written": str(written), "template": template})
        return
    print(written)
    err().print(
        f"wrote the '{template}' template; next: dlcli validate {escape(str(written))} && "
        f"dlcli train {escape(str(written))}",
        highlight=False,
    )


@command
def schema_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it to FILE instead of stdout.")
    ] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """The JSON Schema of the config, for editors' YAML language servers and CI checks.

    Its output is JSON already; `--json` prints it on one line (or, with --output, where it went)."""
    from dlcli.config.schema import config_schema

    if output is None:
        require_stdout("give --output FILE")
    schema = config_schema()
    text = json.dumps(schema, indent=2) + "\n"
    if output is None:
        write_stdout(json.dumps(schema) + "\n" if as_json else text)
        return
    from dlcli.files import write_output

    write_output(output, text)
    if as_json:
        emit_json({"written": str(output)})
        return
    err().print(
        f"wrote {escape(str(output))}; in a YAML config, point editors at it with the first line: "
        f"# yaml-language-server: $schema={escape(str(output))}",
        highlight=False,
    )


def _tracking() -> dict:
    """The MLflow tracking URI `output.mlflow: true` uses here (password masked), where it
    comes from, and MLflow's version (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from dlcli.tracking.where import masked, tracking_uri

    uri, origin = tracking_uri(None, runs_dir_from(None))
    try:
        installed = version("mlflow")
    except PackageNotFoundError:
        installed = None
    origin = "the runs dir: DLCLI_RUNS_DIR or ./runs" if origin == "default" else origin
    return {"tracking_uri": masked(uri), "from": origin, "version": installed}


@command
def env_command(
    as_json: JsonOption = False,
    debug: DebugOption = False,
):
    """Versions, the Keras backend, the devices it sees and the precision they support."""
    from dlcli.runtime.environment import environment

    info = environment()
    info["mlflow"] = _tracking()
    if as_json:
        emit_json(info)
        return
    out = console()
    facts = Facts()
    facts.add_row("dlcli", info["dlcli"])
    facts.add_row("python", info["python"])
    facts.add_row("keras", info["keras"])
    facts.add_row(
        "backend",
        f"{info['backend']} {info['backend_version'] or ''}".strip()
        + (
            "  (from KERAS_BACKEND)"
            if info["backend_from"] == "KERAS_BACKEND"
            else "  (what runtime.backend: auto picks for an MLP; KERAS_BACKEND or runtime.backend changes it)"
        ),
    )
    facts.add_row("installed", ", ".join(info["backends_installed"]))
    facts.add_row("cpu cores", str(info["cpu_count"]))
    tracking = info["mlflow"]
    facts.add_row(
        "mlflow",
        escape(
            f"{tracking['tracking_uri']}  (from {tracking['from']}; output.mlflow: true logs there)"
            if tracking["version"]
            else "not installed (pip install 'dlcli[mlflow]' for output.mlflow)"
        ),
    )
    precision = info["precision"]
    facts.add_row("precision", f"auto picks {precision['auto']}")
    for policy, effect in precision["explicit"].items():
        if policy != "float32":
            facts.add_row(policy, escape(effect))
    out.print(facts)
    table = Table(title="devices", title_justify="left")
    for column in ("type", "id", "name", "compute capability", "memory", "float16", "bfloat16"):
        table.add_column(column)
    for device in info["devices"]:
        gpu = device["type"] == "GPU"
        capability = ".".join(str(p) for p in device.get("compute_capability") or ()) or "—"
        memory = f"{device['memory_gb']} GiB" if device.get("memory_gb") is not None else "—"
        table.add_row(
            device["type"],
            escape(str(device.get("id", "—"))),
            escape(str(device["name"])),
            capability if gpu else "—",
            memory,
            ("fast" if device.get("float16") else "slow") if gpu else "slow (CPU)",
            ("fast" if device.get("bfloat16") else "slow")
            if gpu
            else "bf16 instructions"
            if precision["cpu_bfloat16"]
            else "slow (CPU)",
        )
    out.print(table)
