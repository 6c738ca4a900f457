"""A training session's MLflow run (`dlcli.tracking`): opened once the run folder exists,
fed each history row by `dlcli.training.callbacks.EpochTrack`, finished with the run's
status, final metrics and files, and recorded in run.json (`mlflow`).

Only process 0 of a multi-process run tracks. A resumed run continues the MLflow run that
run.json names when it is in the same store; a run of a sweep or cross-validation is nested
under the parent run the sweep or cv handed it (`dlcli.training.handoff`).
"""

from __future__ import annotations

import os
import sys

from dlcli import __version__
from dlcli.tracking.tracker import Tracker, artifact_files, flat
from dlcli.tracking.where import masked, target
from dlcli.training import handoff


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def start(session) -> Tracker | None:
    """The session's tracker, its MLflow run opened by the worker process; None when
    `output.mlflow` is off or this process is not the one that writes the run."""
    prepared, run = session.prepared, session.run
    config = prepared.config
    where = target(config.output.mlflow, config.name, run.path.parent)
    if where is None or not prepared.group.leads:
        return None
    tracker = Tracker(
        where,
        run_id=where.continued(run.record.mlflow),
        parent_id=handoff.current.mlflow_parent,
        warn=warn,
    )
    tracker.open(params(config), tags(session))
    return tracker


def params(config) -> dict:
    """The resolved config as dotted keys (unset keys left out), any password in a URI
    masked."""
    return {
        k: masked(v) if isinstance(v, str) and "://" in v else v
        for k, v in flat(config.to_dict()).items()
        if v is not None
    }


def folder_tags(folder) -> dict:
    """The tags of any dlcli folder's MLflow run: a run's, a sweep's or a cv's."""
    return {
        "dlcli.run_id": folder.id,
        "dlcli.run_folder": str(folder.path.resolve()),
        "dlcli.version": __version__,
    }


def tags(session) -> dict:
    prepared, run = session.prepared, session.run
    out = {
        **folder_tags(run),
        "dlcli.backend": prepared.config.runtime.backend,
        "dlcli.device": prepared.choices.device_kind,
        "dlcli.source": prepared.config.data.source,
    }
    for path, digest in list((prepared.data.files or {}).items())[:20]:
        out[f"dlcli.data.sha256.{os.path.basename(str(path)) or path}"] = digest
    return out


def finish(session, status: str, record):
    """Log the final metrics, the run folder's files and the status; wait for the worker
    (bounded) and put what happened in run.json's `mlflow`. Returns the record."""
    tracker = getattr(session, "tracker", None)
    if tracker is None:
        return record
    run = session.run
    rows = _history(run)
    final = (
        final_metrics(run.read_json("metrics.json", {}), {k for r in rows for k in r})
        if status == "completed"
        else {}
    )
    tracker.finish(status, artifact_files(run.path), final, step=len(rows))
    recorded = tracker.close()
    if recorded != (record.mlflow if record is not None else None):
        try:
            record = run.update(mlflow=recorded)
        except OSError:
            pass  # a full disk: the run's own status is written; this is its tracking
    return record


def log_evaluation(run, record, config, entry: dict) -> str | None:
    """An evaluation's metrics (`eval_<split>_<metric>`, step = its number in
    evaluations.jsonl) in the MLflow run that run.json names; the error, if it failed."""
    before = record.mlflow or {}
    where = target(config.output.mlflow or bool(before), config.name, run.path.parent)
    run_id = where.continued(before) if where is not None else None
    if run_id is None:
        return None
    tracker = Tracker(where, run_id=run_id, warn=warn)
    split = entry.get("split") or "data"
    tracker.metrics(
        {f"eval_{split}_{k}": v for k, v in entry["metrics"].items()}, len(run.evaluations()) + 1
    )
    return tracker.close().get("error")


def _history(run) -> list[dict]:
    try:
        return run.history()
    except (OSError, ValueError):
        return []


def final_metrics(metrics: dict, history: set[str] = frozenset()) -> dict:
    """metrics.json -> `train_loss`, `test_accuracy`, ... , the run's samples per second,
    best and kept epoch and the baselines' scores. A `val_*` score whose name is a per-epoch
    series already (`history`) is left to that series: logged again it would put a second
    point at one of its steps."""
    out = {}
    for split in ("train", "val", "test"):
        for name, value in (metrics.get(split) or {}).items():
            if f"{split}_{name}" not in history:
                out[f"{split}_{name}"] = value
    for name in ("samples_per_s", "best_epoch", "kept_epoch", "epochs_run"):
        if isinstance(metrics.get(name), (int, float)):
            out[name] = metrics[name]
    for name, scores in (metrics.get("baselines") or {}).items():
        if isinstance(scores, dict):
            for metric, value in scores.items():
                out[f"baseline_{name}_{metric}"] = value
    return out


__all__ = [
    "final_metrics",
    "finish",
    "folder_tags",
    "log_evaluation",
    "params",
    "start",
    "tags",
]
