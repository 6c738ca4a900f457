"""`dlcli cv`: k-fold cross-validation, one complete run per fold, the mean and spread of each metric.

The training data (what is left once the test split is held out) is cut into K folds by
scikit-learn's `StratifiedKFold` for classes (`KFold` for a regression), shuffled with the
config's seed (`dlcli.data.splits.fold`). Fold i is a `dlcli train` of the config with
`data.fold: {index: i, of: K}`: it trains on the other folds, validates on fold i, and is
scored on the same test split as every other fold. Its run folder sits inside the cv folder,
so `dlcli show`, `evaluate` and `export` work on it as on any run.

The folds run as child processes in the sweep's slots (`dlcli.tuning.trials.Slots`: each on
its share of the cores, with a spare process that has Keras imported before its fold is
known), `--parallel` at a time. A fold that fails is recorded and the others go on; Ctrl-C
or SIGTERM stops the folds in flight (their runs say `interrupted`), and `--resume` carries
on: a fold whose run was interrupted or killed continues in its run folder (`train
--resume`), a failed or unstarted one starts a new run. `cv.json` (`dlcli.tuning.cv_record`) is rewritten as each fold starts and ends.

Example:
    >>> result = run_cv("configs/census.yaml", folds=5, parallel=2)
    >>> result.record.metrics["val"]["accuracy"]["mean"]
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dlcli.config.load import load_config
from dlcli.config.schema import Config
from dlcli.data.splits import fold_problem
from dlcli.errors import ConfigError, Interrupted, Problem, RunFailed, first_line
from dlcli.runs.catalog import CV_FILE, find_cv
from dlcli.runs.metrics import direction
from dlcli.runs.record import effective_status
from dlcli.runs.runfolder import RunFolder, now_iso, runs_dir_from
from dlcli.tracking.where import masked_words
from dlcli.training.signals import stop_after_batch
from dlcli.tuning.cv_record import CvRecord, FoldRow, main_metric
from dlcli.tuning.parent_run import finish_parent, open_parent
from dlcli.tuning.preflight import check_parallel
from dlcli.tuning.trials import (
    CONFIG_FILE,
    LOGS,
    Slots,
    failure_reason,
    noted_run,
    override,
    preload_spec,
    printed_result,
    stop_processes,
)

POLL_S = 0.2  # how often the cv looks at its folds
STOP_WAIT_S = 60  # how long interrupted folds get to write their last epoch
DEFAULT_FOLDS = 5


@dataclass
class CvResult:
    """What `run_cv` returns: the cv folder and its cv.json as it last wrote it."""

    folder: RunFolder
    record: CvRecord

    def summary(self) -> dict:
        """What `dlcli cv --json` prints: cv.json, with the folder's path."""
        return {"cv": str(self.folder.path), **self.record.to_json()}


@dataclass
class FoldProcess:
    """One fold's child process and what the cv has seen of it."""

    fold: int
    process: object  # subprocess.Popen
    slot: int
    started: float
    log: Path
    note: Path


class CrossValidator:
    """One `dlcli cv` process: its folder, its record and the folds it runs."""

    def __init__(
        self, folder: RunFolder, config: Config, record: CvRecord, console, progress, env=None
    ):
        self.folder, self.config, self.record = folder, config, record
        self.console, self.progress = console, progress
        self.slots = Slots(
            record.parallel, preload_spec(config), dict(os.environ) if env is None else env
        )
        self.running: dict[int, FoldProcess] = {}
        self.parent = None  # the folds' parent MLflow run (`dlcli.tuning.parent_run`)
        self.began = time.time()

    def run(self) -> CvRecord:
        """Run every fold that has not completed; return cv.json's record."""
        from dlcli.training.signals import Terminated, signals_raise

        self.logs = self.folder.folder(LOGS)
        queue = [f for f in range(self.record.k) if self.record.row(f).state != "completed"]
        self._say(
            f"cv {self.folder.id}: {len(queue)} of {self.record.k} folds to run, "
            f"{self.record.parallel} at a time"
        )
        self.write("running")
        settings = {"cv": {"k": self.record.k, "parallel": self.record.parallel}}
        self.parent = open_parent(self.config, self.folder, "cv", self.record, settings, self.slots)
        interrupted = False
        with signals_raise(), stop_after_batch() as stop:
            try:
                while (queue or self.running) and stop.requested is None:
                    while (
                        queue
                        and len(self.running) < self.record.parallel
                        and stop.requested is None
                    ):
                        self._launch(queue.pop(0), more=len(queue))
                    time.sleep(POLL_S)
                    for fold in list(self.running):
                        code = self.running[fold].process.poll()
                        if code is not None:
                            self._finish(self.running.pop(fold), code)
            except (KeyboardInterrupt, Terminated):
                interrupted = True
            finally:
                self.slots.drop_spares()
                if self.running:
                    self._stop_all(stop.requested or signal.SIGTERM)
        if interrupted or stop.requested is not None:
            self.write("interrupted")
            self._close_parent("interrupted")
            raise Interrupted(
                f"interrupted; the completed folds are kept: carry on with "
                f"`dlcli cv --resume {self.folder.path}`"
            )
        failed = [row for row in self.record.folds if row.state != "completed"]
        self.record.error = (
            f"fold {failed[0].fold} {failed[0].state}: {failed[0].error or 'no reason given'}"
            if failed
            else None
        )
        self.write("failed" if failed else "completed")
        self._close_parent("failed" if failed else "completed")
        return self.record

    def _close_parent(self, status: str) -> None:
        """The parent MLflow run's end: each split's metric means and spreads, cv.json."""
        if self.parent is None:
            return
        summary = {
            f"{split}_{name}_{stat}": value
            for split, named in (self.record.metrics or {}).items()
            for name, stats in named.items()
            for stat, value in stats.items()
        }
        self.record.mlflow = finish_parent(
            self.parent, status, self.folder.path, ("cv.json",), summary
        )
        self.record.write(self.folder)

    def _argv(self, fold: int) -> list[str]:
        """`dlcli train` of fold `fold`: its interrupted (or killed) run carried on, else a new
        run of the cv's config.yaml inside the cv folder, validating on that fold."""
        row = self.record.row(fold)
        run = self.folder.path / row.run if row.run else None
        if run is not None and _resumable(run):
            return ["train", "--resume", str(run), "--json", "--quiet"]
        return [
            "train",
            str(self.folder.path / CONFIG_FILE),
            "--runs-dir",
            str(self.folder.path),
            "--json",
            "--quiet",
            "--set",
            f"name={self.config.name}-f{fold}",
            "--set",
            override("data.fold", {"index": fold, "of": self.record.k}),
        ]

    def _launch(self, fold: int, more: int) -> None:
        used = {fp.slot for fp in self.running.values()}
        slot = next(i for i in range(self.record.parallel) if i not in used)
        log = self.logs / f"fold-{fold:02d}.log"
        process, note = self.slots.start(slot, self._argv(fold), log)
        self.running[fold] = FoldProcess(fold, process, slot, time.time(), log, note)
        if more > len(self.slots.spares):
            self.slots.add_spare(slot, self.logs / f"spare-{slot}-{fold:02d}.log")
        row = self.record.row(fold)
        row.state, row.error = "running", None
        self._say(f"fold {fold} started")
        self.write("running")

    def _finish(self, fp: FoldProcess, code: int) -> None:
        """Record how the ended fold went: its run's metrics, or why it failed."""
        output = printed_result(fp.process.stdout.read() if fp.process.stdout else b"")
        if fp.process.stdout:
            fp.process.stdout.close()
        row = self.record.row(fp.fold)
        run = noted_run(fp.note) or (Path(output["run"]) if output.get("run") else None)
        if run is not None:
            row.run = os.path.relpath(run, self.folder.path)
        row.duration_s = round(float(row.duration_s or 0) + time.time() - fp.started, 2)
        if code == 0 and run is not None:
            found = RunFolder(run).read_json("metrics.json", {}) or {}
            row.state, row.error = "completed", None
            row.metrics = {split: found.get(split) or {} for split in ("val", "test")}
            row.best_epoch, row.epochs = found.get("best_epoch"), found.get("epochs_run")
            row.baselines = found.get("baselines") or None
        else:
            row.state = "interrupted" if code == 130 else "failed"
            row.error = first_line(
                RuntimeError(output.get("error") or failure_reason(fp.log, code))
            )
        fp.note.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if fp.log.stat().st_size == 0:
                fp.log.unlink()
        self.write("running")
        self._say_end(row)

    def _stop_all(self, signum: int) -> None:
        """Pass the stop on to every fold in flight, wait for them to write their last epoch,
        and record each as it ended (interrupted, or completed if it got there first)."""
        stop_processes([fp.process for fp in self.running.values()], signum, STOP_WAIT_S)
        for fp in list(self.running.values()):
            code = fp.process.returncode
            self._finish(fp, 130 if code not in (0, 130) and code is not None else code)
        self.running.clear()

    def write(self, status: str) -> dict:
        record = self.record
        record.status, record.pid, record.host = status, os.getpid(), socket.gethostname()
        metric = main_metric(next((r.metrics for r in record.folds if r.metrics), None))
        record.metric = metric
        record.direction = direction(f"val_{metric}")
        if status != "running":
            record.ended = now_iso()
            record.duration_s = record.elapsed(self.began, time.time())
        return record.write(self.folder)

    def _say(self, line: str) -> None:
        if self.progress and self.console is not None:
            self.console.print(line, highlight=False, markup=False)

    def _say_end(self, row: FoldRow) -> None:
        took = f"  {row.duration_s:.1f} s" if row.duration_s is not None else ""
        if row.state == "completed":
            metric = self.record.metric or main_metric(row.metrics)
            value = (row.metrics.get("val") or {}).get(metric)
            shown = f"val_{metric} {value:.4g}" if isinstance(value, float) else "done"
            self._say(f"fold {row.fold} completed: {shown}{took}")
        else:
            self._say(f"fold {row.fold} {row.state}: {row.error or 'no reason given'}{took}")


def _resumable(run: Path) -> bool:
    """Whether a fold's run folder is carried on (`train --resume`, from its last completed
    epoch, or from the start in the same folder) rather than replaced: its run was
    interrupted or killed, not failed (a NaN, a bad config: a new run tries again)."""
    record = RunFolder(run).read_json("run.json", {}) or {}
    return isinstance(record, dict) and effective_status(record) in ("interrupted", "killed")


# -- the command ---------------------------------------------------------------------------


def run_cv(
    config: str | os.PathLike | None = None,
    overrides=(),
    runs_dir=None,
    folds: int | None = None,
    parallel: int | None = None,
    resume=None,
    console=None,
    progress: bool = True,
) -> CvResult:
    """Cross-validate a config (or carry a cv on) and return its folder and record.

    Raises:
        ConfigError: a problem with the config, its data or the options (exit 2), before
            any fold starts: fewer than 2 folds, more folds than the smallest class has
            training samples, more folds at once than cores.
        RunFailed: a fold failed (exit 1): the others ran, cv.json says why.
        Interrupted: Ctrl-C or SIGTERM (exit 130); `--resume` carries on.
    """
    if resume is not None:
        if config is not None or overrides or folds is not None:
            raise ConfigError(
                Problem(
                    "--resume carries a cv on with its own config.yaml and folds; give no "
                    "CONFIG, --set or --folds (start a new cv to change them)",
                    where="--resume",
                )
            )
        folder = find_cv(resume, runs_dir, where="--resume")
        folder.lock()
        record = CvRecord.read(folder)
        source = folder.path / CONFIG_FILE
        cfg = load_config(source)
        if parallel is not None:
            check_parallel(parallel, "--parallel", "folds")
            record.parallel = parallel
        record.resumes = int(record.resumes or 0) + 1
        record.duration_before_s = float(record.duration_s or 0)
        record.ended = None
    else:
        if config is None:
            raise ConfigError("give a CONFIG to cross-validate, or --resume CV")
        environment = dict(os.environ)  # what the folds start with, before Keras is imported here
        cfg = load_config(config, overrides)
        k = DEFAULT_FOLDS if folds is None else folds
        _check_folds(cfg, config, k, "--folds" if folds is not None else "the default 5 folds")
        parallel = 1 if parallel is None else parallel
        check_parallel(parallel, "--parallel", "folds")
        record = CvRecord(
            name=cfg.name,
            status="starting",
            started=now_iso(),
            pid=os.getpid(),
            host=socket.gethostname(),
            command=masked_words(" ".join(["dlcli", *sys.argv[1:]])) if sys.argv else None,
            config=str(config),
            k=k,
            parallel=parallel,
            seed=cfg.seed,
            extra={"uid": uuid.uuid4().hex},
        )
        record.folds = [FoldRow(i) for i in range(k)]
        folder = RunFolder.create(
            runs_dir_from(runs_dir),
            f"{cfg.name}-cv",
            record=record.to_json(),
            files={CONFIG_FILE: cfg.to_yaml()},
            record_file=CV_FILE,
        )
        record.id = folder.id
        env = environment
    validator = CrossValidator(
        folder, cfg, record, console, progress, env=env if resume is None else None
    )
    try:
        record = validator.run()
    finally:
        folder.unlock()
    result = CvResult(folder, record)
    if record.status == "failed":
        raise RunFailed(
            f"{record.error}; the summary covers {(record.counts or {}).get('completed', 0)} of "
            f"{record.k} folds; see {folder.path / CV_FILE} (`dlcli cv --resume` runs the rest again)",
            payload=result.summary(),
        )
    return result


def _check_folds(config: Config, source, k: int, where: str) -> None:
    """Before any fold starts: the config carries no fold of its own, and its training data
    (the test split held out) can be cut into `k` folds: at least 2, and, for classes, at
    most the training samples of the smallest class."""
    if config.data.fold is not None:
        raise ConfigError(
            config.problem(("data", "fold"), "is set by dlcli cv for each fold; remove it")
        )
    if k < 2:
        raise ConfigError(Problem(f"{k} folds: k-fold needs at least 2 folds", where=where))
    from dlcli.data.dataset import load_data

    whole = config.model_copy(deep=True)
    whole.data.validation_split = 0.0  # the folds take the validation's place
    data = load_data(whole)
    problem = fold_problem(data.train.y, k, data.task == "classification")
    if problem:
        raise ConfigError(Problem(problem, where=where))


__all__ = ["CrossValidator", "CvResult", "run_cv"]
