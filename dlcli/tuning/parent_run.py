"""A sweep's or a cross-validation's MLflow parent run: each trial's or fold's run is nested
under it (the id goes to the child processes in their hand-off, `dlcli.training.handoff`).

The parent is opened before the first trial starts, waiting at most `OPEN_WAIT_S` for the
tracking server: a server that cannot be reached is one warning line, and the trials then
track on their own (or fail to, each with its own line). A resumed sweep or cv reopens the
parent run its sweep.json / cv.json names. At the end the parent gets the status, the
summary metrics and the folder's files (sweep.json or cv.json, best.yaml, the figures).
"""

from __future__ import annotations

from pathlib import Path

from dlcli.runs.runfolder import RunFolder
from dlcli.tracking.tracker import Tracker, artifact_files, flat
from dlcli.tracking.where import target
from dlcli.training.track import folder_tags, params, warn

OPEN_WAIT_S = 15.0


def open_parent(config, folder: RunFolder, kind: str, record, settings: dict, slots):
    """The parent run's `Tracker` (None when `output.mlflow` is off), its run made or
    reopened (`record`: sweep.json's or cv.json's, which gets its ids), its id handed to the
    trials `slots` starts; `settings`: the sweep's or cv's own settings, logged as
    parameters beside the config's."""
    where = target(config.output.mlflow, config.name, folder.path.parent)
    if where is None:
        return None
    tracker = Tracker(where, run_id=where.continued(record.mlflow), warn=warn)
    tracker.open({**params(config), **flat(settings)}, {**folder_tags(folder), "dlcli.kind": kind})
    slots.mlflow_parent = tracker.wait_opened(OPEN_WAIT_S)
    record.mlflow = tracker.record()
    return tracker


def finish_parent(tracker, status: str, folder: Path, names: tuple, metrics: dict) -> dict:
    """The parent's summary metrics, files (`names` in `folder`, and its pictures) and
    status; what sweep.json or cv.json records of it."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    tracker.finish(status, artifact_files(folder, names), numbers)
    return tracker.close()


def sweep_summary(record, metric: str) -> dict:
    """A sweep's summary metrics: its trials by state, and the best value of its metric."""
    summary = {f"{state}_trials": n for state, n in (record.counts or {}).items()}
    best = record.best
    if best is not None and isinstance(best.value, (int, float)):
        summary[f"best_{metric}"] = best.value
    return summary


__all__ = ["OPEN_WAIT_S", "finish_parent", "open_parent", "sweep_summary"]
