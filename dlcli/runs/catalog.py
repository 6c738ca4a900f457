"""Reading runs back: the table of `dlcli runs`, one run for `show`, several for `compare`.

It reads run folders and never writes to one; it imports neither TensorFlow nor Keras (nor
scikit-learn or matplotlib), so the commands built on it answer at once. Which way a metric
is better comes from the run's own record (`dlcli.runs.metrics`).

It reads what it shows: `dlcli runs --limit N` (newest first) and `show latest` read the
folders they list and those whose names say they may be as new (`dlcli.runs.runfolder.newest_first`),
not the whole runs dir; a full listing reads each folder once.

A run's status is what its run.json says, with two corrections a reader needs:
`running` whose process is gone from this host is `killed`, and a folder without a
readable run.json (a crash while it was being created, or a stray folder) is `incomplete`.

Example:
    >>> from dlcli import catalog
    >>> [r["id"] for r in catalog.list_runs("runs", sort="accuracy", limit=3)]
    >>> catalog.compare_runs(["latest", "runs/digits-mlp-20261121-082033"])["differences"]
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from pathlib import Path

import yaml

from dlcli.config.text import MAX_BYTES, config_differences, safe_load
from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.runs.metrics import baseline_values, baselines_of, direction
from dlcli.runs.record import RunRecord
from dlcli.runs.runfolder import (
    RunFolder,
    effective_status,
    folder_names,
    newest_first,
    read_json_at,
    runs_dir_from,
    stamp_time,
)
from dlcli.runs.runfolder import timestamp as _timestamp

SPLITS = ("test", "val", "train")
SWEEP_FILE = "sweep.json"  # what makes a folder of the runs dir a sweep (`dlcli.tuning.sweep`)
CV_FILE = "cv.json"  # what makes a folder of the runs dir a cross-validation (`dlcli.tuning.cv`)
# --sort keys that are not metrics, and which way is "first".
RUN_FIELDS = {"started": "newest first", "duration": "shortest first", "name": "a to z"}


# -- one run -------------------------------------------------------------------------------


def _run_fields() -> dict:
    """A row's fields that a run fills from its metrics (empty until it does)."""
    return {
        "epochs": None,
        "epochs_run": None,
        "best_epoch": None,
        "metrics": {},
        "samples_per_s": None,
        "error": None,
        "directions": {},
        "baselines": {},
    }


def summarize(folder: str | os.PathLike, record: dict | None = None) -> dict:
    """One row of `dlcli runs` from a folder's run.json and metrics.json; never raises.

    Returns a dict with id, name, path, status, started, ended, duration_s, epochs (the
    configured total), epochs_run, best_epoch, metrics ({train, val, test}),
    samples_per_s and error. A folder without a readable run.json is `incomplete`.
    `record` is its run.json when read already ({} when it could not be).
    """
    folder = folder if isinstance(folder, Path) else Path(folder)
    if record is None:
        record = read_json_at(os.path.join(folder, "run.json"))
    row = {
        "kind": "run",
        "id": folder.name,
        "name": None,
        "path": str(folder),
        "status": "incomplete",
        "started": None,
        "ended": None,
        "duration_s": None,
        **_run_fields(),
    }
    if not isinstance(record, dict) or not record:
        return row
    record = RunRecord.from_json(record)
    metrics = read_json_at(os.path.join(folder, "metrics.json"))
    metrics = metrics if isinstance(metrics, dict) else {}
    status = record.effective_status
    duration = record.duration_s
    if status == "running" and duration is None:
        started = _timestamp(record.started)
        duration = round(time.time() - started, 1) if started else None
    epochs_run = metrics.get("epochs_run")
    if epochs_run is None and status != "incomplete":
        epochs_run = _history_rows(RunFolder(folder))  # unfinished: no metrics.json yet
    row.update(
        name=record.name,
        status=status,
        started=record.started,
        ended=record.ended,
        duration_s=duration,
        epochs=record.epochs,
        epochs_run=epochs_run,
        best_epoch=metrics.get("best_epoch"),
        metrics={
            split: metrics[split]
            for split in ("train", "val", "test")
            if isinstance(metrics.get(split), dict)
        },
        samples_per_s=metrics.get("samples_per_s"),
        error=record.error,
        directions=record.metric_directions,
        baselines=baselines_of(metrics),
    )
    if status != record.status:
        row["recorded_status"] = record.status
    return row


def metric_value(row: dict, spec: str):
    """A run's value for `test.accuracy`, `val_loss` or `accuracy` (test), or None."""
    split, name = parse_metric(spec)
    value = row.get("metrics", {}).get(split, {}).get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def parse_metric(spec: str) -> tuple[str, str]:
    """'accuracy' -> ('test', 'accuracy'); 'val.loss' and 'val_loss' -> ('val', 'loss')."""
    spec = spec.strip()
    for split in SPLITS:
        for sep in (".", "_"):
            prefix = split + sep
            if spec.startswith(prefix) and len(spec) > len(prefix):
                return split, spec[len(prefix) :]
    return "test", spec


# -- many runs -----------------------------------------------------------------------------


def find_runs(runs_dir=None, sort: str | None = None) -> list[dict]:
    """Every run folder in the runs dir, summarized and sorted (default: newest first).

    Args:
        runs_dir: the runs dir (default `runs`, or $DLCLI_RUNS_DIR).
        sort: a metric (`accuracy`, `test.accuracy`, `val_loss`; split default `test`),
            best first: higher first for accuracy/auc/precision/recall/f1, lower first
            for loss and errors; or `started`, `duration`, `name`. Runs without the
            value come last.

    Newest first is by `started` in run.json (sweep.json for a sweep); a folder without
    one by the time in its name, else by its mtime; ties by id, the larger first.
    """
    runs = runs_dir_from(runs_dir)
    with no_collection():
        rows = [
            _row(*found)
            for _, _, found in newest_first(_names(runs), lambda name: _dated(runs, name))
        ]
    if not sort or sort == "started":
        return rows
    if sort == "duration":
        return sorted(rows, key=lambda r: (r["duration_s"] is None, r["duration_s"] or 0))
    if sort == "name":
        return sorted(rows, key=lambda r: (r["name"] is None, r["name"] or r["id"]))
    values = {row["path"]: metric_value(row, sort) for row in rows}
    if rows and all(v is None for v in values.values()):
        known = sorted({f"{s}.{m}" for row in rows for s, ms in row["metrics"].items() for m in ms})
        choices = known + list(RUN_FIELDS)
        raise ConfigError(
            Problem(
                f"no run in {runs} has the metric '{sort}'{did_you_mean(sort, choices)}; "
                f"sort by one of: {', '.join(choices)}",
                where="--sort",
            )
        )
    way = _direction(parse_metric(sort)[1], rows)
    sign = -1.0 if way == "max" else 1.0
    return sorted(
        rows, key=lambda r: (values[r["path"]] is None, sign * (values[r["path"]] or 0.0))
    )


def select_runs(
    runs_dir=None, sort: str | None = None, limit: int | None = None
) -> tuple[list[dict], int]:
    """The first `limit` runs of `find_runs(runs_dir, sort)` (all with None), and how many
    runs there are: what `dlcli runs` shows.

    Newest first (no sort, or `started`) with a limit, it reads the folders it shows and
    those whose names say they may be as new (started within `STAMP_SLACK` of them), not
    the whole runs dir (`dlcli.runs.runfolder.newest_first`); the total is a count of folders.
    """
    if limit is None or limit < 1 or (sort and sort != "started"):
        rows = find_runs(runs_dir, sort)
        return (rows if limit is None else rows[:limit]), len(rows)
    runs = runs_dir_from(runs_dir)
    names = _names(runs)
    with no_collection():
        newest = newest_first(names, lambda name: _dated(runs, name), limit)
        return [_row(*found) for _, _, found in newest], len(names)


@contextlib.contextmanager
def no_collection():
    """No cyclic garbage collection inside the block: reading thousands of JSON files
    makes hundreds of thousands of containers (none in a cycle), and the collector, which
    runs every few hundred new ones and rescans the older ones, took a third of the time
    of a listing (and of its JSON text)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _names(runs: Path) -> list[str]:
    """The runs dir's folders ([] when it does not exist); a ConfigError when it cannot be read."""
    try:
        return folder_names(runs)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ConfigError(
            Problem("is a file, not a runs dir; choose another with --runs-dir", where=str(runs))
        ) from None
    except OSError as exc:
        raise ConfigError(
            Problem(f"cannot read the runs dir: {exc.strerror or exc}", where=str(runs))
        ) from None


def _dated(runs: Path, name: str) -> tuple[float, tuple[Path, bool, dict]]:
    """When a folder of the runs dir started, as the listing orders it (see `find_runs`),
    with what it read to know: (time, (folder, its kind, its run.json, sweep.json or cv.json))."""
    folder = runs / name
    path = str(folder)
    kind = next(
        (k for k, file in FOLDER_KINDS.items() if os.path.isfile(os.path.join(path, file))),
        "run",
    )
    record = read_json_at(os.path.join(path, FOLDER_KINDS.get(kind, "run.json")))
    record = record if isinstance(record, dict) else {}
    return _timestamp(record.get("started")) or stamp_time(name, local=True) or _mtime(path), (
        folder,
        kind,
        record,
    )


def _row(folder: Path, kind: str, record: dict) -> dict:
    if kind == "sweep":
        return summarize_sweep(folder, record)
    if kind == "cv":
        return summarize_cv(folder, record)
    return summarize(folder, record)


def _direction(metric: str, rows: list[dict]) -> str:
    """The metric's direction as the runs recorded it (the first that did), else a guess."""
    known = next((row["directions"] for row in rows if metric in row.get("directions", {})), None)
    return direction(metric, known)


def list_runs(runs_dir=None, sort: str | None = None, limit: int | None = None) -> list[dict]:
    """The first `limit` runs of `find_runs(runs_dir, sort)`: what `dlcli runs` shows."""
    return select_runs(runs_dir, sort, limit)[0]


def run_details(ref=None, runs_dir=None) -> dict:
    """Everything `dlcli show` prints about one run (a path, an id or `latest`).

    Returns `summarize`'s fields plus record (run.json, a `RunRecord`), config (config.yaml as data),
    config_text, history (history.csv rows) and evaluations (evaluations.jsonl entries).
    """
    run = RunFolder.find(ref, runs_dir)
    details = summarize(run.path)
    text = run.read_text("config.yaml", MAX_BYTES)
    try:
        history = run.history()
    except (ValueError, KeyError, TypeError):
        history = []  # a damaged history.csv: show the rest
    details.update(
        record=run.record,
        config=_parse_yaml(text),
        config_text=text,
        history=history,
        evaluations=run.evaluations(),
        exports=_exports(run),
    )
    return details


# -- sweeps ---------------------------------------------------------------------------------


def is_sweep(folder) -> bool:
    """Whether a folder is a sweep's (it holds sweep.json), not a run's."""
    return (Path(folder) / SWEEP_FILE).is_file()


def find_sweep(ref: str | os.PathLike, runs_dir=None, where: str = "") -> RunFolder:
    """A sweep folder by path or by id under the runs dir."""
    return _find_kind("sweep", ref, runs_dir, where)


def _find_kind(kind: str, ref, runs_dir, where: str) -> RunFolder:
    """A folder of `kind` (sweep, cv: the file it holds, `FOLDER_KINDS`) by path or by id
    under the runs dir; a ConfigError with a did-you-mean among the folders of that kind."""
    runs = runs_dir_from(runs_dir)
    record = FOLDER_KINDS[kind]

    def holds(path: Path) -> bool:
        return (path / record).is_file()

    for path in (Path(ref), runs / str(ref)):
        if holds(path):
            return RunFolder(path)
    hint = (
        did_you_mean(str(ref), [p.name for p in runs.iterdir() if holds(p)])
        if runs.is_dir()
        else ""
    )
    raise ConfigError(
        Problem(
            f"no {kind} '{ref}' (neither a {kind} folder nor an id in {runs}){hint}; "
            "`dlcli runs` lists them",
            where=where,
        )
    )


def _duration(record: dict, status: str):
    """A sweep's or cv's duration so far: recorded, or, while it runs, since it started
    (with the processes before this one's)."""
    if status != "running":
        return record.get("duration_s")
    started = _timestamp(record.get("started"))
    if not started:
        return None
    return round(float(record.get("duration_before_s") or 0) + time.time() - started, 1)


# -- cross-validations ------------------------------------------------------------------------


def is_cv(folder) -> bool:
    """Whether a folder is a cross-validation's (it holds cv.json)."""
    return (Path(folder) / CV_FILE).is_file()


def find_cv(ref: str | os.PathLike, runs_dir=None, where: str = "") -> RunFolder:
    """A cv folder by path or by id under the runs dir."""
    return _find_kind("cv", ref, runs_dir, where)


def summarize_cv(folder, record: dict | None = None) -> dict:
    """One row of `dlcli runs` for a cv folder (`kind: cv`: its main metric's mean and std
    over the folds, and its folds by state), from its cv.json; never raises."""
    cv = RunFolder(folder)
    record = cv.read_json(CV_FILE, {}) if record is None else record
    record = record if isinstance(record, dict) else {}
    status = effective_status(record) if record else "incomplete"
    duration = _duration(record, status)
    metric = record.get("metric")
    summary = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    main = (summary.get("val") or {}).get(metric) if metric else None
    return {
        "kind": "cv",
        "id": cv.path.name,
        "name": record.get("name"),
        "path": str(cv.path),
        "status": status,
        "started": record.get("started"),
        "ended": record.get("ended"),
        "duration_s": duration,
        "metric": f"val_{metric}" if metric else None,
        "direction": record.get("direction"),
        "k": record.get("k"),
        "mean": main.get("mean") if isinstance(main, dict) else None,
        "std": main.get("std") if isinstance(main, dict) else None,
        "folds": record.get("counts") if isinstance(record.get("counts"), dict) else {},
        **_run_fields(),  # a cv's row has a run's columns, empty
    }


def cv_details(ref, runs_dir=None) -> dict:
    """Everything `dlcli show CV` prints: `summarize_cv`'s fields and cv.json."""
    folder = find_cv(ref, runs_dir)
    record = folder.read_json(CV_FILE, {})
    record = record if isinstance(record, dict) else {}
    details = summarize_cv(folder.path, record)
    details["record"] = record
    return details


FOLDER_KINDS = {"sweep": SWEEP_FILE, "cv": CV_FILE}  # a folder's kind by the file it holds


def short_key(key: str) -> str:
    """A searched key as a column names it: 'compile.optimizer.learning_rate' -> 'learning_rate',
    'model.layers.0.units' -> 'layers.0.units'."""
    parts = key.split(".")
    return ".".join(parts[-3:]) if len(parts) > 2 and parts[-2].isdigit() else parts[-1]


def summarize_sweep(folder, record: dict | None = None) -> dict:
    """One row of `dlcli runs` for a sweep folder (`kind: sweep`, its best trial and its
    trials by state), from its sweep.json (`record`, when read already); never raises."""
    sweep = RunFolder(folder)
    record = sweep.read_json(SWEEP_FILE, {}) if record is None else record
    record = record if isinstance(record, dict) else {}
    status = effective_status(record) if record else "incomplete"
    duration = _duration(record, status)
    best = record.get("best") if isinstance(record.get("best"), dict) else None
    return {
        "kind": "sweep",
        "id": sweep.path.name,
        "name": record.get("name"),
        "path": str(sweep.path),
        "status": status,
        "started": record.get("started"),
        "ended": record.get("ended"),
        "duration_s": duration,
        "metric": record.get("metric"),
        "direction": record.get("direction"),
        "best": best,
        "trials": record.get("counts") if isinstance(record.get("counts"), dict) else {},
        **_run_fields(),  # a sweep's row has a run's columns, empty
    }


def sweep_details(ref, runs_dir=None) -> dict:
    """Everything `dlcli show SWEEP` prints: `summarize_sweep`'s fields and sweep.json."""
    folder = find_sweep(ref, runs_dir)
    record = folder.read_json(SWEEP_FILE, {})
    record = record if isinstance(record, dict) else {}
    details = summarize_sweep(folder.path, record)
    details["record"] = record
    return details


def compare_runs(refs, runs_dir=None) -> dict:
    """Runs side by side: the config keys that differ, and their metrics with the best marked.

    Returns {"runs": [summary, ...], "differences": [{"key", "values"}],
    "metrics": [{"metric", "goal", "values", "best"}], "baselines": [{"baseline", "metric",
    "values"}]}: each `values` list follows the order of `runs`; `best` holds the indices of
    the best value (empty when all are equal). `baselines` are each baseline's test metrics.
    """
    refs = list(refs)
    if len(refs) < 2:
        raise ConfigError(
            Problem(f"compare needs at least two runs, got {len(refs)}; `dlcli runs` lists them")
        )
    folders = [RunFolder.find(ref, runs_dir) for ref in refs]
    rows = [summarize(folder.path) for folder in folders]
    configs = [_parse_yaml(folder.read_text("config.yaml", MAX_BYTES)) or {} for folder in folders]
    keys: dict[str, None] = {}
    for other in configs[1:]:
        keys.update(dict.fromkeys(config_differences(configs[0], other)))
    differences = [
        {"key": key, "values": [_lookup(config, key) for config in configs]}
        for key in sorted(keys, key=_path_order)
    ]
    metrics = []
    for split in SPLITS:
        names = list(dict.fromkeys(name for row in rows for name in row["metrics"].get(split, {})))
        for name in names:
            spec = f"{split}.{name}"
            values = [metric_value(row, spec) for row in rows]
            way = _direction(name, rows)
            metrics.append(
                {"metric": spec, "goal": way, "values": values, "best": _best(values, way)}
            )
    return {
        "runs": rows,
        "differences": differences,
        "metrics": metrics,
        "baselines": baseline_values(rows),
    }


# -- helpers -------------------------------------------------------------------------------


def _parse_yaml(text: str | None):
    if text is None:
        return None
    try:
        data = safe_load(text)
    except yaml.YAMLError:  # TooComplex too: nested or aliased past the bounds
        return None
    return data if isinstance(data, dict) else None


def _history_rows(run: RunFolder) -> int | None:
    text = run.read_text("history.csv")
    if text is None:
        return None
    return max(sum(1 for line in text.splitlines() if line.strip()) - 1, 0)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _lookup(data, dotted: str):
    """The value at 'model.layers.0.units' (list items by index), or None if absent."""
    node = data
    for part in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _path_order(dotted: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in dotted.split(".")]


def _best(values: list, direction: str) -> list[int]:
    present = [v for v in values if v is not None]
    if len(set(present)) < 2:
        return []
    best = max(present) if direction == "max" else min(present)
    return [i for i, v in enumerate(values) if v == best]


def _exports(run: RunFolder) -> dict | None:
    """exports.json after `dlcli export` (None before, or when it is damaged)."""
    data = run.read_json("exports.json")
    return data if isinstance(data, dict) and isinstance(data.get("formats"), dict) else None


__all__ = [
    "compare_runs",
    "find_runs",
    "list_runs",
    "metric_value",
    "parse_metric",
    "run_details",
    "select_runs",
    "summarize",
]
