"""sweep.json as typed records: `SweepRecord`, its `TrialRow`s and its `Best`, read and written here alone.

sweep.json is what a sweep folder says of itself: `dlcli runs` and `dlcli show` read it
(`dlcli.runs.catalog`, as plain JSON, without this module) and `dlcli sweep --resume` carries
the sweep on from it. Its shape on disk is fixed (older sweep folders must still be read and
resumed): `SweepRecord.to_json` writes the keys in the order dlcli always has, leaves out the
ones a sweep has not reached yet (`ended` while running, `importance` before the end), and
keeps any key it does not know as it read it.

This module is not the study: the rows come from Optuna's trials (`TrialRow.from_trial`),
but Optuna is never imported here.

Example:
    >>> record = SweepRecord.read(folder)
    >>> record.best.value if record.best else None
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.errors import ConfigError, Problem
from dlcli.runs.catalog import SWEEP_FILE
from dlcli.runs.runfolder import RunFolder

# Optuna's trial states, as sweep.json names them; a failed trial the sweep stopped is `interrupted`.
STATES = {
    "COMPLETE": "completed",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}
STATE_ORDER = ("completed", "pruned", "failed", "interrupted", "running", "waiting")


@dataclass
class TrialRow:
    """One trial of the study as sweep.json lists it."""

    number: int
    state: str  # completed | pruned | failed | interrupted | running | waiting
    params: dict[str, Any]
    value: float | None = None  # the trial's score: its best epoch (completed trials only)
    last_value: float | None = None  # the last epoch reported to the pruner
    epochs: int | None = None
    duration_s: float | None = None
    run: str | None = None  # its run folder: relative to the sweep folder when inside it
    sweep: str | None = None  # the id of the sweep folder that ran it (a shared study has several)
    here: bool = False  # run by this sweep folder
    cores: int | None = None
    error: str | None = None

    @classmethod
    def from_trial(cls, trial, folder: Path, uid: str) -> TrialRow:
        """The row of an Optuna `FrozenTrial`, for the sweep folder `folder` whose uid is `uid`."""
        state = STATES.get(trial.state.name, trial.state.name.lower())
        attrs = trial.user_attrs
        if state == "failed" and attrs.get("interrupted"):
            state = "interrupted"
        run = attrs.get("run")
        steps = trial.intermediate_values
        return cls(
            number=trial.number,
            state=state,
            params=trial.params,
            value=trial.value if trial.state.name == "COMPLETE" else None,
            last_value=steps[max(steps)] if steps else None,
            epochs=attrs.get("epochs", len(steps)),
            duration_s=attrs.get("duration_s"),
            run=_relative(run, folder),
            sweep=attrs.get("sweep"),
            here=attrs.get("sweep_uid") == uid,
            cores=attrs.get("cores"),
            error=attrs.get("error"),
        )

    @classmethod
    def from_json(cls, data: dict) -> TrialRow:
        known = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**{**known, "params": data.get("params") or {}, "here": bool(data.get("here"))})

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Best:
    """The best completed trial: sweep.json's `best`, and what `dlcli sweep --json` prints."""

    trial: int
    value: float
    params: dict[str, Any]
    run: str | None

    @classmethod
    def of(cls, rows: list[TrialRow], direction: str) -> Best | None:
        """The best completed row (highest `value` when `direction` is max), None before any."""
        done = [r for r in rows if r.state == "completed" and r.value is not None]
        if not done:
            return None
        pick = max if direction == "max" else min
        top = pick(done, key=lambda r: r.value)
        return cls(top.number, top.value, top.params, top.run)

    @classmethod
    def from_json(cls, data) -> Best | None:
        if not isinstance(data, dict):
            return None
        return cls(data.get("trial"), data.get("value"), data.get("params") or {}, data.get("run"))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SweepRecord:
    """sweep.json: the sweep's identity, settings and status, and the study's trials."""

    id: str | None = None  # the folder's name (RunFolder.create writes it)
    name: str | None = None  # the config's name: the study's name too
    uid: str | None = None  # tells this folder's trials from others' in a shared study
    status: str = "starting"  # starting | running | completed | failed | interrupted
    started: str | None = None
    pid: int | None = None
    host: str | None = None
    command: str | None = None
    config: str | None = None  # the config file the sweep started from
    sweep: dict = field(
        default_factory=dict
    )  # the sweep: section, as run (trials, parallel from the options)
    metric: str | None = None
    direction: str | None = None  # max | min
    storage: str | None = None  # the study's database: study.db, or a URL without its password
    study: str | None = None
    # The study's trials, once the sweep has listed them (rewritten as each trial starts and ends):
    counts: dict[str, int] | None = None  # this folder's trials by state
    study_counts: dict[str, int] | None = None  # the whole study's
    best: Best | None = None
    trials: list[TrialRow] | None = None
    ended: str | None = None
    duration_s: float | None = None  # every process of the sweep together
    importance: dict[str, float] | None = None
    resumes: int | None = None
    duration_before_s: float | None = None  # the processes before this one's
    mlflow: dict | None = None  # the parent MLflow run of the trials (`dlcli.tuning.parent_run`)
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # keys this dlcli does not know, kept as read

    @classmethod
    def read(cls, folder: RunFolder) -> SweepRecord:
        """The folder's sweep.json (an empty record when missing or unreadable); a ConfigError
        when it holds JSON that is not an object (an edited or damaged file)."""
        data = folder.read_json(SWEEP_FILE)
        if data is not None and not isinstance(data, dict):
            raise ConfigError(
                Problem(
                    f"is damaged (a JSON {type(data).__name__}, not an object), so the sweep cannot be continued; "
                    "restore it, or start a new sweep",
                    where=str(folder.path / SWEEP_FILE),
                )
            )
        return cls.from_json(data or {})

    @classmethod
    def from_json(cls, data: dict) -> SweepRecord:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        record = cls(
            **{k: data[k] for k in names if k in data},
            extra={k: v for k, v in data.items() if k not in names},
        )
        record.best = Best.from_json(data.get("best"))
        trials = data.get("trials")
        record.trials = (
            [TrialRow.from_json(t) for t in trials if isinstance(t, dict)]
            if isinstance(trials, list)
            else None
        )
        return record

    def to_json(self) -> dict:
        """sweep.json's content: unset keys left out, except `command` (null when unknown)
        and `best` (null while no trial completed) once the trials are listed."""
        data = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                data.update(value)
            elif (
                value is not None
                or f.name == "command"
                or (f.name == "best" and self.trials is not None)
            ):
                data[f.name] = _plain(value)
        return data

    def write(self, folder: RunFolder) -> dict:
        """Rewrite the folder's sweep.json; return what it now holds."""
        data = self.to_json()
        folder.write_json(SWEEP_FILE, data)
        return data

    def list_trials(self, rows: list[TrialRow], direction: str) -> None:
        """Take the study's trials as they stand: the rows, the counts and the best."""
        self.counts = record_counts([r for r in rows if r.here])
        self.study_counts = record_counts(rows)
        self.best = Best.of(rows, direction)
        self.trials = rows

    def elapsed(self, began: float, now: float) -> float:
        """The sweep's duration so far: earlier processes' and this one's since `began`."""
        return round(float(self.duration_before_s or 0) + now - began, 1)


def record_counts(rows: list[TrialRow]) -> dict[str, int]:
    """Trials by state, in the order completed, pruned, failed, interrupted, running, waiting."""
    states = [row.state for row in rows]
    return {
        state: states.count(state)
        for state in sorted(set(states), key=lambda s: (*STATE_ORDER, s).index(s))
    }


def _plain(value):
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.to_json() if isinstance(value, (TrialRow, Best)) else value


def _relative(run: str | None, folder: Path) -> str | None:
    """A trial's run folder relative to the sweep folder when inside it (as it moves with it)."""
    if not run:
        return run
    with contextlib.suppress(ValueError):
        Path(run).resolve().relative_to(folder.resolve())
        return os.path.relpath(run, folder)
    return run
