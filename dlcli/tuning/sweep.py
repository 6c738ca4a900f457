"""`dlcli sweep`: many trials of one config, each with some keys changed, and the best kept.

The search is Optuna's: its samplers (tpe, random, grid) choose each trial's values, its
median pruner says which trial trails the others at the same epoch, and its database
storage holds the study, so several `dlcli sweep` processes can share one and a killed
sweep resumes from it (`dlcli.tuning.study`). dlcli's part is what Optuna does not know:

- the space is dotted config keys, as `--set` takes them, each of a kind of
  `dlcli.config.space`; `dlcli.tuning.preflight` tries each range's ends (and every choice)
  against the schema and Keras's names before any trial starts;
- each trial is a `dlcli train` child process training the sweep's `config.yaml` with its
  values as `--set`s into the sweep folder, so it is a complete run folder, and a NaN, an
  out-of-memory or a crash fails that trial alone; `parallel: K` slots share the cores, each
  with a spare process that has Keras imported before its trial is known (`dlcli.tuning.trials`);
- pruning follows each trial's `history.csv`, reports every epoch to the pruner, and stops a
  pruned trial with SIGINT (its run folder says `interrupted`, the study `pruned`);
- `sweep.json` (`dlcli.tuning.record.SweepRecord`) is rewritten as each trial starts and
  ends, `best.yaml` as each ends, `history.png` and `importance.png` at the end (and when
  stopped) (`dlcli.tuning.figures`).

This module is the loop (`Sweeper`) and the command (`run_sweep`). Reading sweep folders
back (`dlcli runs`, `show`) is `dlcli.runs.catalog`'s, without Optuna.

Example:
    >>> result = run_sweep("configs/digits_sweep.yaml", trials=4, parallel=2)
    >>> result.best["params"]
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import sys
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from dlcli.config.load import load_config
from dlcli.config.schema import Config, SweepConfig
from dlcli.config.space import distributions, grid_size
from dlcli.errors import ConfigError, Interrupted, Problem, RunFailed, first_line
from dlcli.runs.catalog import SWEEP_FILE, find_sweep, short_key
from dlcli.runs.runfolder import RunFolder, now_iso, runs_dir_from
from dlcli.tracking.where import masked_words
from dlcli.training.signals import held, stop_after_batch
from dlcli.tuning import sqlite_lock
from dlcli.tuning.figures import draw_history, draw_importance, write_best
from dlcli.tuning.parent_run import finish_parent, open_parent, sweep_summary
from dlcli.tuning.preflight import Target, check_parallel, check_space, sweep_settings
from dlcli.tuning.record import SweepRecord, TrialRow
from dlcli.tuning.study import (
    STUDY_FILE,
    fail_stale,
    finished_here,
    finished_in_study,
    importances,
    load_or_create,
    own_storage,
    requeue_lost_points,
    safe_storage,
    tell,
)
from dlcli.tuning.trials import (
    CONFIG_FILE,
    LOGS,
    Slots,
    TrialProcess,
    await_trial,
    best_value,
    failure_reason,
    noted_run,
    preload_spec,
    printed_result,
    stop_processes,
    trial_argv,
)

POLL_S = 0.2  # how often the sweep looks at its trials
STOP_WAIT_S = 60  # how long interrupted trials get to write their last epoch


@dataclass
class SweepResult:
    """What `run_sweep` returns: the sweep folder and its sweep.json as it last wrote it."""

    folder: RunFolder
    sweep_record: SweepRecord

    @property
    def record(self) -> dict:
        """sweep.json's content."""
        return self.sweep_record.to_json()

    @property
    def best(self) -> dict | None:
        best = self.sweep_record.best
        return best.to_json() if best else None

    def summary(self) -> dict:
        """What `dlcli sweep --json` prints."""
        return {
            "sweep": str(self.folder.path),
            "best": self.best,
            "trials": self.sweep_record.counts or {},
        }


class Sweeper:
    """One `dlcli sweep` process: its folder, its study and the trials it runs."""

    def __init__(
        self,
        folder: RunFolder,
        config: Config,
        settings: SweepConfig,
        target: Target,
        storage: str,
        console=None,
        progress: bool = True,
        env: dict[str, str] | None = None,
    ):
        self.folder, self.config, self.settings, self.target = folder, config, settings, target
        self.storage_url = storage
        self.console, self.progress = console, progress
        self.running: dict[int, TrialProcess] = {}
        self.slots = Slots(
            settings.parallel, preload_spec(config), dict(os.environ) if env is None else env
        )
        self.study = None
        self.parent = None  # the trials' parent MLflow run (`dlcli.tuning.parent_run`)
        self.began = time.time()
        self.record = SweepRecord.read(folder)  # sweep.json: this process writes it
        self.uid = str(self.record.uid or folder.id)
        self.offline = False  # the study's database stayed locked: the study cannot be written

    # -- the study
    def open_study(self, fresh: bool):
        """Open (or create) the study and return it; a ConfigError naming the process that
        keeps its database locked. Trials a killed sweep left running are marked lost."""
        # Sweeps sharing a storage each draw their own trials (not copies of one another's):
        # their seeds differ; a sweep with its own database repeats its draws from the seed.
        shared = self.storage_url != own_storage(self.folder.path)
        seed = self.config.seed + (zlib.crc32(self.uid.encode()) if shared else 0)
        try:
            self.study = load_or_create(
                self.storage_url, self.config.name, self.settings, self.target, seed
            )
            if not fresh:
                fail_stale(self.study, self.uid)
                if self.settings.sampler == "grid":
                    requeue_lost_points(self.study)
        except Exception as exc:
            if not sqlite_lock.is_locked(exc):
                raise
            raise self._offline(ConfigError) from None
        return self.study

    def _offline(self, error: type[ConfigError | RunFailed]) -> ConfigError | RunFailed:
        """The error for a study database another process keeps locked; sweep.json, written
        without the study (it cannot be read), says `interrupted`: `--resume` carries on."""
        self.offline = True
        self.record.status, self.record.ended = "interrupted", now_iso()
        self.record.duration_s = self.record.elapsed(self.began, time.time())
        with contextlib.suppress(OSError, ConfigError):
            self.record.write(self.folder)
        own = self.storage_url == own_storage(self.folder.path)
        path = self.folder.path / STUDY_FILE if own else sqlite_lock.database_path(self.storage_url)
        return sqlite_lock.locked_error(path, f"dlcli sweep --resume {self.folder.path}", error)

    # -- the loop
    def run(self, trials: int) -> SweepRecord:
        """Run trials until this folder has `trials` finished ones; return sweep.json's record.
        A RunFailed naming the process when another one keeps the study's database locked."""
        try:
            return self._run(trials)
        except Exception as exc:
            if not sqlite_lock.is_locked(exc):
                raise
            raise self._offline(RunFailed) from None

    def _run(self, trials: int) -> SweepRecord:
        from dlcli.training.signals import Terminated, signals_raise

        dists = distributions(self.settings.space)
        self.logs = self.folder.folder(LOGS)  # checked once: nothing but this process writes in it
        remaining = max(0, trials - finished_here(self.study, self.uid))
        if self.settings.sampler == "grid":
            remaining = min(
                remaining, max(0, grid_size(self.settings.space) - finished_in_study(self.study))
            )
        self._say_start(remaining)
        self.write("running")
        self.parent = open_parent(
            self.config, self.folder, "sweep", self.record, {"sweep": self.record.sweep}, self.slots
        )
        interrupted = False
        # The first Ctrl-C/SIGTERM is a request (no exception inside an Optuna write); the
        # trials in flight get it too and end as `interrupted` runs. A second one raises.
        with signals_raise(), stop_after_batch() as stop:
            try:
                while (remaining > 0 or self.running) and stop.requested is None:
                    while (
                        remaining > 0
                        and len(self.running) < self.settings.parallel
                        and stop.requested is None
                    ):
                        remaining -= 1
                        self._launch(dists, remaining)
                    time.sleep(POLL_S)
                    for number in list(self.running):
                        self._follow(self.running[number])
            except (KeyboardInterrupt, Terminated):
                interrupted = True
            except Exception as exc:
                self.offline = sqlite_lock.is_locked(
                    exc
                )  # the trials are stopped, the study not told
                raise
            finally:
                self.slots.drop_spares()
                if self.running:  # Ctrl-C, SIGTERM or an error in the sweep itself
                    self._stop_all(stop.requested or signal.SIGTERM)
        if interrupted or stop.requested is not None:
            self.write("interrupted")
            self.final_files()
            self._close_parent("interrupted")
            raise Interrupted(
                f"interrupted; the finished trials are kept: carry on with "
                f"`dlcli sweep --resume {self.folder.path}`"
            )
        status = "completed" if self._completed_here() else "failed"
        self.write(status)
        self.final_files()
        self._close_parent(status)
        return self.record

    def _close_parent(self, status: str) -> None:
        """The parent MLflow run's end: the best value, the trial counts, the files."""
        if self.parent is not None:
            self.record.mlflow = finish_parent(
                self.parent,
                status,
                self.folder.path,
                ("sweep.json", "best.yaml"),
                sweep_summary(self.record, self.target.metric),
            )
            self.record.write(self.folder)

    def _completed_here(self) -> int:
        return sum(1 for row in self._rows() if row.here and row.state == "completed")

    def _rows(self) -> list[TrialRow]:
        """The study's trials as sweep.json lists them."""
        return [
            TrialRow.from_trial(t, self.folder.path, self.uid)
            for t in self.study.get_trials(deepcopy=False)
        ]

    def _launch(self, dists: dict, more: int) -> None:
        """Start a trial in a free slot (in that slot's spare process when it has one), and
        a spare for the slot's next trial when `more` trials are still to come."""
        trial = self.study.ask(dists)
        number = trial.number
        for key, value in (
            ("sweep", self.folder.id),
            ("sweep_uid", self.uid),
            ("host", socket.gethostname()),
            ("pid", os.getpid()),
        ):
            trial.set_user_attr(key, value)
        used = {tp.slot for tp in self.running.values()}
        slot = next(i for i in range(self.settings.parallel) if i not in used)
        log = self.logs / f"trial-{number:04d}.log"
        process, note = self.slots.start(
            slot, trial_argv(self.folder.path, self.config.name, number, trial.params), log
        )
        trial.set_user_attr("cores", len(self.slots.cores_of(slot) or self.slots.cores))
        self.running[number] = TrialProcess(trial, process, slot, time.time(), log, note)
        if more > len(self.slots.spares):
            self.slots.add_spare(slot, self.logs / f"spare-{slot}-{number:04d}.log")
        self._say(
            f"trial {number} started: "
            + ", ".join(f"{short_key(k)}={_shown(v)}" for k, v in trial.params.items())
        )
        self.write("running")

    def _follow(self, tp: TrialProcess) -> None:
        """Report the trial's new epochs to the pruner; stop it if pruned; finish it if done."""
        if tp.run is None:
            tp.run = noted_run(tp.note)
            if tp.run is not None:
                tp.trial.set_user_attr("run", str(tp.run))
        code = tp.process.poll()
        if tp.run is not None and tp.pruned_at is None:
            self._report(tp, final=code is not None)
        if code is not None:
            self._finish(tp, code)

    def _report(self, tp: TrialProcess, final: bool) -> None:
        """Report the epochs the trial's history.csv gained to the pruner; SIGINT the trial
        when the pruner says it trails (not on its `final` epochs: it has ended)."""
        try:
            rows = RunFolder(tp.run).history()
        except (OSError, ConfigError):
            return
        for row in rows[tp.reported :]:
            value = row.get(self.target.metric)
            if isinstance(value, float) and math.isfinite(value):
                tp.trial.report(value, step=row["epoch"])
            tp.reported += 1
            if not final and tp.trial.should_prune():
                tp.pruned_at = row["epoch"]
                with contextlib.suppress(ProcessLookupError):
                    tp.process.send_signal(signal.SIGINT)
                self._say(
                    f"trial {tp.trial.number} pruned at epoch {row['epoch']}: "
                    f"{self.target.metric} {value:.4g} trails the median"
                )
                return

    def _finish(self, tp: TrialProcess, code: int) -> None:
        """Tell the study how the ended trial went: pruned, its best value, or why it failed."""
        from optuna.trial import TrialState

        del self.running[tp.trial.number]
        output = printed_result(tp.process.stdout.read() if tp.process.stdout else b"")
        if tp.process.stdout:
            tp.process.stdout.close()
        trial, number = tp.trial, tp.trial.number
        trial.set_user_attr("duration_s", round(time.time() - tp.started, 2))
        if tp.run is None and output.get("run"):
            tp.run = Path(output["run"])
            trial.set_user_attr("run", str(tp.run))
        if tp.pruned_at is not None:
            trial.set_user_attr("epochs", tp.reported)
            tell(self.study, trial, state=TrialState.PRUNED)
        elif code == 0:
            rows = RunFolder(tp.run).history() if tp.run else []
            value = best_value(rows, self.target.metric, self.target.direction)
            trial.set_user_attr("epochs", len(rows))
            if value is None:
                trial.set_user_attr("error", f"history.csv has no finite '{self.target.metric}'")
                tell(self.study, trial, state=TrialState.FAIL)
            else:
                tell(self.study, trial, value)
        else:
            reason = output.get("error") or failure_reason(tp.log, code)
            trial.set_user_attr("error", first_line(RuntimeError(reason)))
            if code == 130:
                trial.set_user_attr("interrupted", True)
            tell(self.study, trial, state=TrialState.FAIL)
        tp.note.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if tp.log.stat().st_size == 0:
                tp.log.unlink()
        self.write("running")
        self._say_end(number)
        self.final_files(figures=False)

    def _stop_all(self, signum: int) -> None:
        """Pass the stop on to every trial in flight, wait for them to write their last
        epoch, and mark them lost (interrupted) in the study."""
        from optuna.trial import TrialState

        stop_processes([tp.process for tp in self.running.values()], signum, STOP_WAIT_S)
        with held():
            for tp in list(self.running.values()):
                if self.offline:  # the trial stays `running` in the study: --resume marks it lost
                    continue
                if tp.process.returncode == 0:  # it finished before the stop reached it: a result
                    self._follow(tp)
                    continue
                if tp.run is None:
                    tp.run = noted_run(tp.note)
                with contextlib.suppress(Exception):
                    if tp.run is not None:
                        tp.trial.set_user_attr("run", str(tp.run))
                    tp.trial.set_user_attr("interrupted", True)
                    tp.trial.set_user_attr("duration_s", round(time.time() - tp.started, 2))
                    tell(self.study, tp.trial, state=TrialState.FAIL)
            self.running.clear()

    # -- the record
    def write(self, status: str) -> dict:
        """Rewrite sweep.json: the status, the settings and every trial of the study; return
        what it now holds."""
        rows = self._rows()
        record = self.record
        record.status, record.pid, record.host = status, os.getpid(), socket.gethostname()
        record.metric, record.direction = self.target.metric, self.target.direction
        record.list_trials(rows, self.target.direction)
        if status != "running":
            record.ended = now_iso()
            record.duration_s = record.elapsed(self.began, time.time())
        return record.write(self.folder)

    def final_files(self, figures: bool = True) -> None:
        """best.yaml as sweep.json has the study (after each trial); history.png and
        importance.png (at the end: drawing, and Optuna's fANOVA, would take CPU from the trials)."""
        if self.record.best is not None:
            write_best(self.folder, self.record.best, self.config.name, self.target.metric)
        if figures:
            with contextlib.suppress(
                Exception
            ):  # a figure is a convenience: never the sweep's failure
                draw_history(self.folder, self.record.trials or [], self.target)
                found = importances(self.study, self.settings.space)
                if found:
                    draw_importance(self.folder, found, self.target)
                    self.record.importance = found
                    self.record.write(self.folder)

    # -- what the user sees
    def _say(self, line: str) -> None:
        if self.progress and self.console is not None:
            self.console.print(line, highlight=False, markup=False)

    def _say_start(self, remaining: int) -> None:
        s = self.settings
        self._say(
            f"sweep {self.folder.id}: {remaining} trial(s), {s.parallel} at a time; "
            f"{self.target.metric} ({self.target.direction}), sampler {s.sampler}, pruner {s.pruner}"
        )

    def _say_end(self, number: int) -> None:
        row = next((r for r in self.record.trials or [] if r.number == number), None)
        if row is None:
            return
        best = self.record.best
        tail = f"  (best {best.value:.4g}, trial {best.trial})" if best else ""
        took = f"  {row.duration_s:.1f} s" if row.duration_s is not None else ""
        if row.state == "completed":
            self._say(
                f"trial {row.number} completed: {self.target.metric} {row.value:.4g}{took}{tail}"
            )
        elif row.state in ("failed", "interrupted"):
            self._say(f"trial {row.number} {row.state}: {row.error or 'no reason given'}{took}")


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- the command ---------------------------------------------------------------------------


def run_sweep(
    config: str | os.PathLike | None = None,
    overrides=(),
    runs_dir=None,
    trials: int | None = None,
    parallel: int | None = None,
    storage: str | None = None,
    resume=None,
    console=None,
    progress: bool = True,
) -> SweepResult:
    """Run a sweep (or carry one on) and return its folder and record.

    Args:
        config: the YAML config with a `sweep:` section (None with `resume`).
        overrides: `--set` strings applied to every trial.
        runs_dir: where the sweep folder goes (default `runs`).
        trials: how many trials this process runs (default `sweep.trials`); with `resume`,
            the total the sweep folder should reach.
        parallel: trials at once on this machine (default `sweep.parallel`).
        storage: an Optuna storage URL shared with other sweeps (default: SQLite in the folder).
        resume: a sweep folder (path or id) to carry on.
        console: a rich Console for progress lines (default: none).

    Raises:
        ConfigError: a problem in the config or its space (exit 2), before any trial.
        RunFailed: no trial completed (exit 1); sweep.json says why each failed.
        Interrupted: Ctrl-C or SIGTERM (exit 130); `--resume` carries on.
    """
    if resume is not None:
        if config is not None or overrides:
            raise ConfigError(
                Problem(
                    "--resume carries a sweep on with its own config.yaml; give no CONFIG or "
                    "--set (start a new sweep to change them)",
                    where="--resume",
                )
            )
        sweeper, target_trials = _reopen(
            resume, runs_dir, trials, parallel, storage, console, progress
        )
    else:
        if config is None:
            raise ConfigError("give a CONFIG with a sweep: section, or --resume SWEEP")
        sweeper, target_trials = _start(
            config, overrides, runs_dir, trials, parallel, storage, console, progress
        )
    record = sweeper.run(target_trials)
    result = SweepResult(sweeper.folder, record)
    sweeper.folder.unlock()
    if record.status == "failed":
        counts = ", ".join(f"{n} {s}" for s, n in (record.counts or {}).items()) or "none ran"
        errors = [row.error for row in record.trials or [] if row.here and row.error]
        cause = f"; first error: {errors[0]}" if errors else ""
        raise RunFailed(
            f"no trial completed ({counts}){cause}; see {sweeper.folder.path / SWEEP_FILE}",
            payload=result.summary(),
        )
    return result


def _start(
    source, overrides, runs_dir, trials, parallel, storage, console, progress
) -> tuple[Sweeper, int]:
    config = load_config(source, overrides)
    if config.sweep is None:
        raise ConfigError(
            Problem(
                "has no sweep: section; add one with the keys to search under sweep.space "
                "(docs/tuning.md)",
                where=str(source),
            )
        )
    settings = sweep_settings(config, trials, parallel)
    check_parallel(
        settings.parallel,
        "--parallel" if parallel is not None else config.where(("sweep", "parallel")),
    )
    environment = dict(os.environ)  # what the trials start with, before Keras is imported here
    problems, target = check_space(config, source, overrides)
    if problems:
        raise ConfigError(problems)
    record = SweepRecord(
        name=config.name,
        uid=uuid.uuid4().hex,
        status="starting",
        started=now_iso(),
        pid=os.getpid(),
        host=socket.gethostname(),
        command=masked_words(" ".join(["dlcli", *sys.argv[1:]])) if sys.argv else None,
        config=str(source),
        sweep=json.loads(json.dumps(settings.model_dump(mode="json"))),
        metric=target.metric,
        direction=target.direction,
        storage=safe_storage(storage) if storage else STUDY_FILE,
        study=config.name,
    )
    folder = RunFolder.create(
        runs_dir_from(runs_dir),
        f"{config.name}-sweep",
        record=record.to_json(),
        files={CONFIG_FILE: config.to_yaml()},
        record_file=SWEEP_FILE,
    )
    url = storage or own_storage(folder.path)
    sweeper = Sweeper(folder, config, settings, target, url, console, progress, env=environment)
    sweeper.open_study(fresh=True)
    return sweeper, settings.trials


def _reopen(ref, runs_dir, trials, parallel, storage, console, progress) -> tuple[Sweeper, int]:
    folder = find_sweep(ref, runs_dir)
    folder.lock()
    record = SweepRecord.read(folder)
    config = load_config(folder.path / CONFIG_FILE)
    try:
        config.sweep = SweepConfig.model_validate(record.sweep or {})
    except ValueError:  # pydantic's ValidationError
        raise ConfigError(
            Problem(
                "holds no readable sweep settings: it is damaged or not a sweep folder dlcli "
                "wrote; start a new sweep",
                where=str(folder.path / SWEEP_FILE),
            )
        ) from None
    settings = sweep_settings(config, trials, parallel)
    check_parallel(settings.parallel, "--parallel")
    recorded = record.storage or STUDY_FILE
    if storage is None and recorded != STUDY_FILE and "***" in recorded:
        raise ConfigError(
            Problem(
                "the sweep's storage needs its password: give --storage again", where="--resume"
            )
        )
    url = storage or (own_storage(folder.path) if recorded == STUDY_FILE else recorded)
    target = Target(record.metric or "val_loss", record.direction or "min")
    record.sweep = settings.model_dump(mode="json")
    record.resumes = int(record.resumes or 0) + 1
    record.duration_before_s = float(record.duration_s or 0)
    record.write(folder)
    sweeper = Sweeper(folder, config, settings, target, url, console, progress)
    sweeper.open_study(fresh=False)
    return sweeper, settings.trials


__all__ = ["SweepResult", "Sweeper", "await_trial", "check_space", "run_sweep"]
