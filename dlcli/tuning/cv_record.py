"""cv.json as typed records: `CvRecord` and its `FoldRow`s, read and written here alone.

cv.json is what a cv folder says of itself: `dlcli runs` and `dlcli show` read it
(`dlcli.runs.catalog`, as plain JSON) and `dlcli cv --resume` carries the cv on from it.
Per fold: its run folder, state, and the metrics of its run's metrics.json (`val`: the fold
held out; `test`: the test split every fold leaves out); per metric of each split: the mean,
standard deviation (numpy's, over the completed folds), min and max (`metrics`); and the
same for the baselines each fold's run scored on the test split (`baselines`).

Example:
    >>> record = CvRecord.read(folder)
    >>> record.metrics["val"]["accuracy"]["mean"]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dlcli.errors import ConfigError, Problem
from dlcli.runs.catalog import CV_FILE
from dlcli.runs.runfolder import RunFolder

SPLITS = ("val", "test")
STATE_ORDER = ("completed", "failed", "interrupted", "running", "waiting")


@dataclass
class FoldRow:
    """One fold as cv.json lists it."""

    fold: int
    state: str = "waiting"  # waiting | running | completed | failed | interrupted
    run: str | None = None  # its run folder, relative to the cv folder
    metrics: dict[str, dict[str, float]] | None = None  # {"val": {...}, "test": {...}}
    baselines: dict[str, dict[str, float]] | None = None  # metrics.json's, on the test split
    best_epoch: int | None = None
    epochs: int | None = None
    duration_s: float | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> FoldRow:
        known = {f.name: data.get(f.name) for f in dataclasses.fields(cls) if f.name in data}
        return cls(**known)

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k == "run"}


@dataclass
class CvRecord:
    """cv.json: the cv's identity, settings and status, its folds and their summary."""

    id: str | None = None  # the folder's name (RunFolder.create writes it)
    name: str | None = None
    status: str = "starting"  # starting | running | completed | failed | interrupted
    started: str | None = None
    pid: int | None = None
    host: str | None = None
    command: str | None = None
    config: str | None = None  # the config file the cv started from
    k: int = 5  # how many folds
    parallel: int = 1
    seed: int | None = None
    metric: str | None = None  # the main metric, of the `val` split: what `dlcli runs` shows
    direction: str | None = None  # max | min
    counts: dict[str, int] | None = None
    folds: list[FoldRow] = field(default_factory=list)
    metrics: dict[str, dict[str, dict[str, float]]] | None = None  # split -> metric -> stats
    baselines: dict[str, dict[str, dict[str, float]]] | None = None  # name -> test metric -> stats
    ended: str | None = None
    duration_s: float | None = None  # every process of the cv together
    resumes: int | None = None
    duration_before_s: float | None = None
    error: str | None = None
    mlflow: dict | None = None  # the parent MLflow run of the folds (`dlcli.tuning.parent_run`)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this dlcli does not know

    @classmethod
    def read(cls, folder: RunFolder) -> CvRecord:
        """The folder's cv.json; a ConfigError when it is not a JSON object."""
        data = folder.read_json(CV_FILE)
        if not isinstance(data, dict):
            raise ConfigError(
                Problem(
                    "is missing or damaged, so the cv cannot be continued; start a new cv",
                    where=str(folder.path / CV_FILE),
                )
            )
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        record = cls(
            **{k: data[k] for k in names if k in data and k != "folds"},
            extra={k: v for k, v in data.items() if k not in names},
        )
        folds = data.get("folds")
        record.folds = (
            [FoldRow.from_json(f) for f in folds if isinstance(f, dict)]
            if isinstance(folds, list)
            else []
        )
        return record

    def to_json(self) -> dict:
        data = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                data.update(value)
            elif f.name == "folds":
                data["folds"] = [row.to_json() for row in value]
            elif value is not None or f.name == "command":
                data[f.name] = value
        return data

    def write(self, folder: RunFolder) -> dict:
        """Rewrite the folder's cv.json, its counts and summary updated; return what it holds."""
        self.counts = counts(self.folds)
        self.metrics = summary(self.folds)
        self.baselines = baseline_summary(self.folds) or None
        data = self.to_json()
        folder.write_json(CV_FILE, data)
        return data

    def row(self, fold: int) -> FoldRow:
        """Fold `fold`'s row (added, waiting, when cv.json has none yet)."""
        for row in self.folds:
            if row.fold == fold:
                return row
        row = FoldRow(fold)
        self.folds.append(row)
        self.folds.sort(key=lambda r: r.fold)
        return row

    def elapsed(self, began: float, now: float) -> float:
        return round(float(self.duration_before_s or 0) + now - began, 1)


def counts(rows: list[FoldRow]) -> dict[str, int]:
    """Folds by state, completed first."""
    states = [row.state for row in rows]
    return {
        state: states.count(state)
        for state in sorted(set(states), key=lambda s: (*STATE_ORDER, s).index(s))
    }


def summary(rows: list[FoldRow]) -> dict[str, dict[str, dict[str, float]]]:
    """Per split and metric, over the completed folds: mean, std (numpy's: divided by the
    number of folds), min, max, and how many folds have it."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in SPLITS:
        values: dict[str, list[float]] = {}
        for row in rows:
            if row.state != "completed" or not row.metrics:
                continue
            for name, value in (row.metrics.get(split) or {}).items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    values.setdefault(name, []).append(float(value))
        if values:
            out[split] = {name: stats(found) for name, found in values.items()}
    return out


def baseline_summary(rows: list[FoldRow]) -> dict[str, dict[str, dict[str, float]]]:
    """Per baseline (majority, gradient boosting) and test metric, over the completed folds:
    the same statistics as `summary`, to set beside the model's."""
    values: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row.state != "completed" or not isinstance(row.baselines, dict):
            continue
        for name, scores in row.baselines.items():
            for metric, value in (scores if isinstance(scores, dict) else {}).items():
                if metric != "fit_s" and isinstance(value, (int, float)) and math.isfinite(value):
                    values.setdefault(name, {}).setdefault(metric, []).append(float(value))
    return {
        name: {metric: stats(found) for metric, found in metrics.items()}
        for name, metrics in values.items()
    }


def stats(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
        "folds": len(values),
    }


def main_metric(metrics: dict | None) -> str:
    """The metric `dlcli runs` shows for a cv: the first compiled one, else the loss."""
    names = list((metrics or {}).get("val") or {})
    return next((n for n in names if n != "loss"), "loss")
