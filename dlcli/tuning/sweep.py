"""`dlcli sweep`: many trials of one config, each with some keys changed, and the best kept (SPEC 7).

The search is Optuna's: its samplers (tpe, random, grid) choose each trial's values, its
median pruner says which trial trails the others at the same epoch, and its database
storage (SQLite in the sweep folder, or any `--storage` URL) holds the study, so several
`dlcli sweep` processes can share one and a killed sweep resumes from it. dlcli's part is
what Optuna does not know:

- the space is dotted config keys, as `--set` takes them; `check_space` tries each range's
  ends (and every choice) against the schema and Keras's names before any trial starts;
- each trial is a `dlcli train` child process training the sweep's `config.yaml` with its
  values as `--set`s into the sweep folder, so it is a complete run folder, and a NaN, an
  out-of-memory or a crash fails that trial alone. With `parallel: K` each child is pinned
  to its share of the cores (and its thread pools sized to match);
- pruning follows each trial's `history.csv`, reports every epoch to the pruner, and stops a
  pruned trial with SIGINT (its run folder says `interrupted`, the study `pruned`);
- `sweep.json` is rewritten as each trial starts and ends, `best.yaml` as each ends;
  `history.png` and `importance.png` at the end (and when stopped);
- a spare process per slot starts Keras and its backend while the trial before it trains,
  and takes the next trial's arguments on stdin (`await_trial`): the 2–3 s of imports every
  `dlcli train` pays are off the sweep's critical path.

Reading sweep folders back (`dlcli runs`, `show`) is `dlcli.runs.catalog`'s, without Optuna.

Example:
    >>> result = run_sweep("configs/digits_sweep.yaml", trials=4, parallel=2)
    >>> result.best["params"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from dlcli.config.schema import Config, SweepConfig, load_config
from dlcli.errors import ConfigError, Interrupted, Problem, RunFailed, did_you_mean, first_line
from dlcli.runs.catalog import SWEEP_FILE, find_sweep, short_key
from dlcli.runs.metrics import direction as metric_direction
from dlcli.runs.runfolder import RunFolder, now_iso, runs_dir_from
from dlcli.training import handoff
from dlcli.training.distributed import read_note
from dlcli.training.signals import held, stop_after_batch
from dlcli.tuning import sqlite_lock

STUDY_FILE = "study.db"
CONFIG_FILE = "config.yaml"  # the config every trial trains, with the sweep's --sets applied
BEST_FILE = "best.yaml"
LOGS = ".logs"  # each trial's stderr, and the note where it names its run folder
STATES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
STORAGE_ATTEMPTS = 8
POLL_S = 0.2  # how often the sweep looks at its trials
STOP_WAIT_S = 60  # how long interrupted trials get to write their last epoch
# The median pruner waits for this many completed trials, and for a trial's second epoch,
# before it stops anything: fewer and it prunes on noise.
PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS = 3, 2


# -- the space -----------------------------------------------------------------------------

def override(key: str, value) -> str:
    """A trial's value as a `--set` that reads back as the same value.

    Example:
        >>> override("compile.optimizer.learning_rate", 1e-05)
        'compile.optimizer.learning_rate=1.0e-05'
    """
    if isinstance(value, str):  # quoted: '1e-3' or 'true' stays text (dlcli reads 1e-3 as a number)
        return f"{key}={json.dumps(value)}"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def candidates(entry: dict) -> list:
    """The values of a range that `check_space` tries: every choice, or both ends."""
    if "choice" in entry:
        return list(entry["choice"])
    kind = next(k for k in entry if k != "step")
    return list(entry[kind])


def distributions(space: dict) -> dict:
    """sweep.space as Optuna distributions, by dotted key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, entry in space.items():
        step = entry.get("step")
        if "choice" in entry:
            out[key] = CategoricalDistribution(entry["choice"])
        elif "uniform" in entry:
            out[key] = FloatDistribution(float(entry["uniform"][0]), float(entry["uniform"][1]),
                                         step=None if step is None else float(step))
        elif "log_uniform" in entry:
            out[key] = FloatDistribution(float(entry["log_uniform"][0]), float(entry["log_uniform"][1]), log=True)
        elif "int" in entry:
            out[key] = IntDistribution(entry["int"][0], entry["int"][1], step=int(step or 1))
        else:
            out[key] = IntDistribution(entry["log_int"][0], entry["log_int"][1], log=True)
    return out


def grid(space: dict) -> tuple[dict, list[str]]:
    """The grid sampler's lists of values, and the keys that have no finite list."""
    lists, endless = {}, []
    for key, entry in space.items():
        if "choice" in entry:
            lists[key] = list(entry["choice"])
        elif "int" in entry:
            low, high = entry["int"]
            lists[key] = list(range(low, high + 1, int(entry.get("step") or 1)))
        elif "uniform" in entry and entry.get("step") is not None:
            low, high = entry["uniform"]
            count = round((high - low) / entry["step"])
            lists[key] = [round(low + i * entry["step"], 12) for i in range(count + 1)]
        else:
            endless.append(key)
    return lists, endless


def grid_size(space: dict) -> int:
    return math.prod(len(values) for values in grid(space)[0].values())


@dataclass
class Target:
    """What the trials are scored on: a history.csv column and which way is better."""

    metric: str
    direction: str  # max | min


def check_space(config: Config, source: str | Path | dict, overrides=()) -> tuple[list[Problem], Target | None]:
    """Every problem of `config.sweep` found before any trial: a key the config lacks, a
    value the schema or Keras refuses, a grid without finite lists, a metric training does
    not log. Each problem is placed at the line of its `sweep:` key. Imports Keras (names
    and arguments are checked against it)."""
    from dlcli.config.schema import locator
    from dlcli.config.text import raw_config
    from dlcli.model import checks
    from dlcli.runtime import keras_names
    from dlcli.runtime.backend import auto_backend, import_keras

    sweep = config.sweep
    problems: list[Problem] = []
    if "keras" not in sys.modules:  # names and arguments are the same on every backend
        import_keras(auto_backend())
    for key, entry in sweep.space.items():
        at = ("sweep", "space", key)
        if key.split(".")[0] in ("name", "sweep"):
            problems.append(config.problem(at, f"'{key}' cannot be searched: it names the trials' folders or "
                                               "the search itself; sweep keys of data, model, compile, training "
                                               "or runtime"))
            continue
        found: dict[str, list] = {}
        for value in candidates(entry):
            trial_overrides = [*overrides, override(key, value)]
            messages = []
            try:
                raw, lines, shown, origins = raw_config(source, trial_overrides)
                messages += [_said(p) for p in checks.name_problems(raw, locator(lines, shown, origins))]
                messages += [_said(p) for p in checks.config_problems(load_config(source, trial_overrides))]
            except ConfigError as exc:
                messages += [_said(p) for p in exc.problems]
            for message in dict.fromkeys(messages):
                found.setdefault(message, []).append(value)
        tried = candidates(entry)
        for message, values in found.items():
            shown_values = "" if len(values) == len(tried) > 1 else f" (with {key} = {values[0]!r})"
            problems.append(config.problem(at, f"{message}{shown_values}"))
    if sweep.sampler == "grid":
        endless = grid(sweep.space)[1]
        for key in endless:
            problems.append(config.problem(("sweep", "space", key), (
                "the grid sampler takes a finite list of values: give this key a choice, an int range, or a "
                "uniform range with a step; or use sampler: tpe")))
    target = None
    try:
        target = _target(config, keras_names)
    except ConfigError as exc:
        problems += exc.problems
    return problems, target


def _said(problem: Problem) -> str:
    """A problem a trial's value causes, without its place (the sweep's key is the place)."""
    return f"{problem.path}: {problem.message}" if problem.path else problem.message


def _target(config: Config, keras_names) -> Target:
    """The metric the trials are scored on, checked against what training will log."""
    from dlcli.runtime.keras_names import NameProblem

    sweep = config.sweep
    validation = config.data.validation_split > 0
    names = ["loss"]
    ways = {"loss": "min"}
    for spec in config.compile.metrics:
        try:
            metric = keras_names.make_metric(spec)
        except NameProblem:
            return Target(sweep.metric or "loss", "min")  # the metric's own error is reported by training
        name = keras_names.logged_name(metric)
        names.append(name)
        way = getattr(metric, "_direction", None)
        ways[name] = {"up": "max", "down": "min"}.get(way, metric_direction(name))
    logged = [*names, *([f"val_{n}" for n in names] if validation else [])]
    metric = sweep.metric or ("val_loss" if validation else "loss")
    if metric not in logged:
        hint = did_you_mean(metric, logged)
        why = " (data.validation_split is 0: no val_ columns)" if metric.startswith("val_") and not validation else ""
        raise ConfigError(config.problem(("sweep", "metric"), (
            f"'{metric}' is not a column of history.csv{why}{hint}; choose one of: {', '.join(logged)}")))
    way = sweep.direction if sweep.direction != "auto" else ways.get(metric.removeprefix("val_"), "min")
    return Target(metric, way)


# -- the sweep folder ------------------------------------------------------------------------

def _safe_storage(url: str) -> str:
    """The storage URL as sweep.json may keep it: without a password."""
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    return url


# -- running ---------------------------------------------------------------------------------

@dataclass
class TrialProcess:
    """One trial's child process and what the sweep has seen of it."""

    trial: object  # optuna.trial.Trial
    process: subprocess.Popen
    slot: int
    started: float
    log: Path
    note: Path
    run: Path | None = None
    reported: int = 0  # epochs reported to the pruner
    pruned_at: int | None = None


@dataclass
class SweepResult:
    folder: RunFolder
    record: dict

    @property
    def best(self) -> dict | None:
        return self.record.get("best")

    def summary(self) -> dict:
        """What `dlcli sweep --json` prints."""
        return {"sweep": str(self.folder.path), "best": self.best, "trials": self.record.get("counts", {})}


class Sweeper:
    """One `dlcli sweep` process: its folder, its study and the trials it runs."""

    def __init__(self, folder: RunFolder, config: Config, settings: SweepConfig, target: Target, storage: str,
                 console=None, progress: bool = True):
        self.folder, self.config, self.settings, self.target = folder, config, settings, target
        self.storage_url = storage
        self.console, self.progress = console, progress
        self.running: dict[int, TrialProcess] = {}
        self.env = dict(os.environ)
        self.cores = usable_cores()
        self.study = None
        self.spares: dict[int, tuple] = {}  # slot -> (process, note, log) of its next trial's process
        self.preload = preload_spec(config)
        self.began = time.time()
        self.record = sweep_record(folder)  # sweep.json: this process writes it
        self.uid = str(self.record.get("uid") or folder.id)
        self.offline = False  # the study's database stayed locked: the study cannot be written

    # -- the study
    def open_study(self, fresh: bool):
        """Open (or create) the study; a ConfigError naming the process that keeps its
        database locked."""
        try:
            return self._open_study(fresh)
        except Exception as exc:
            if not sqlite_lock.is_locked(exc):
                raise
            raise self._offline(ConfigError) from None

    def _offline(self, error: type[ConfigError | RunFailed]) -> ConfigError | RunFailed:
        """The error for a study database another process keeps locked; sweep.json, written
        without the study (it cannot be read), says `interrupted`: `--resume` carries on."""
        self.offline = True
        before = float(self.record.get("duration_before_s") or 0)
        self.record.update(status="interrupted", ended=now_iso(), duration_s=round(before + time.time() - self.began, 1))
        with contextlib.suppress(OSError, ConfigError):
            self.folder.write_json(SWEEP_FILE, self.record)
        own = self.storage_url == f"sqlite:///{(self.folder.path / STUDY_FILE).resolve()}"
        path = self.folder.path / STUDY_FILE if own else sqlite_lock.database_path(self.storage_url)
        return sqlite_lock.locked_error(path, f"dlcli sweep --resume {self.folder.path}", error)

    def _open_study(self, fresh: bool):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        storage = self._storage(optuna)
        name = self.config.name
        existing = name in [s.study_name for s in optuna.get_all_study_summaries(storage)]
        # Sweeps sharing a storage each draw their own trials (not copies of one another's):
        # their seeds differ; a sweep with its own database repeats its draws from the seed.
        shared = self.storage_url != f"sqlite:///{(self.folder.path / STUDY_FILE).resolve()}"
        study = optuna.create_study(storage=storage, study_name=name, direction=self._optuna_direction(),
                                    sampler=self._sampler(zlib.crc32(self.uid.encode()) if shared else 0),
                                    pruner=self._pruner(), load_if_exists=True)
        space = json.loads(json.dumps(self.settings.space))
        if existing:
            theirs = study.user_attrs.get("dlcli_space")
            if study.direction.name.lower() != self._optuna_direction() or (theirs is not None and theirs != space):
                raise ConfigError(Problem(
                    f"the study '{name}' in this storage searches another space or direction; give the sweep "
                    "another name (name: or --set name=...) or the same sweep: section", where=_safe_storage(self.storage_url)))
        else:
            study.set_user_attr("dlcli_space", space)
            study.set_user_attr("dlcli_metric", self.target.metric)
        self.study = study
        if not fresh:
            self._fail_stale()
        return study

    def _storage(self, optuna):
        """The RDB storage; two sweeps that create one database at the same moment race to
        write its schema, so the loser tries again, for `sqlite_lock.WAIT_S` at most (a lock
        another process keeps is `open_study`'s error)."""
        sqlite = self.storage_url.startswith("sqlite")
        began = time.monotonic()
        for attempt in range(STORAGE_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(
                    self.storage_url, engine_kwargs={"connect_args": {"timeout": sqlite_lock.WAIT_S}} if sqlite else {})
            except Exception as exc:  # a bad URL, a missing driver, a refused connection, a lock
                racing = any(word in str(exc) for word in ("IntegrityError", "UNIQUE constraint", "already exists", "locked"))
                if racing and attempt < STORAGE_ATTEMPTS - 1 and time.monotonic() - began < sqlite_lock.WAIT_S:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if sqlite_lock.is_locked(exc):
                    raise
                raise ConfigError(Problem(f"cannot open the study's storage: {first_line(exc)}; give --storage "
                                          "sqlite:///PATH or postgresql://USER@HOST/DB (pip install psycopg2-binary)",
                                          where=_safe_storage(self.storage_url))) from None
        raise AssertionError("unreachable")

    def _tell(self, trial, value=None, state=None) -> None:
        """study.tell; the grid sampler's `study.stop()` once its grid is done is meant for
        `study.optimize` and raises here after the trial is stored: the loop counts trials itself."""
        try:
            self.study.tell(trial, value, state=state)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise

    def _optuna_direction(self) -> str:
        return "maximize" if self.target.direction == "max" else "minimize"

    def _sampler(self, offset: int):
        import optuna

        seed = (self.config.seed + offset) % 2**32
        if self.settings.sampler == "grid":
            return optuna.samplers.GridSampler(grid(self.settings.space)[0], seed=seed)
        if self.settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def _pruner(self):
        import optuna

        if self.settings.pruner == "none":
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS)

    def _fail_stale(self) -> None:
        """Trials of this sweep left `running` by a killed sweep: lost, so marked failed."""
        from optuna.trial import Trial, TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.user_attrs.get("sweep_uid") == self.uid:
                trial = Trial(self.study, frozen._trial_id)
                trial.set_user_attr("interrupted", True)
                self._tell(trial, state=TrialState.FAIL)

    def finished_here(self) -> int:
        """Trials this sweep folder ran to an end (completed, pruned or failed; not lost)."""
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.user_attrs.get("sweep_uid") == self.uid and t.state.is_finished()
                   and not t.user_attrs.get("interrupted"))

    # -- the loop
    def run(self, trials: int) -> dict:
        """Run trials until this folder has `trials` finished ones; return sweep.json. A
        RunFailed naming the process when another one keeps the study's database locked."""
        try:
            return self._run(trials)
        except Exception as exc:
            if not sqlite_lock.is_locked(exc):
                raise
            raise self._offline(RunFailed) from None

    def _run(self, trials: int) -> dict:
        from dlcli.training.signals import Terminated, signals_raise

        dists = distributions(self.settings.space)
        self.logs = self.folder.folder(LOGS)  # checked once: nothing but this process writes in it
        remaining = max(0, trials - self.finished_here())
        if self.settings.sampler == "grid":
            remaining = min(remaining, max(0, grid_size(self.settings.space) - self._grid_done()))
        self._say_start(remaining)
        self.write("running")
        interrupted = False
        # The first Ctrl-C/SIGTERM is a request (no exception inside an Optuna write); the
        # trials in flight get it too and end as `interrupted` runs. A second one raises.
        with signals_raise(), stop_after_batch() as stop:
            try:
                while (remaining > 0 or self.running) and stop.requested is None:
                    while remaining > 0 and len(self.running) < self.settings.parallel and stop.requested is None:
                        remaining -= 1
                        self._launch(dists, remaining)
                    time.sleep(POLL_S)
                    for number in list(self.running):
                        self._follow(self.running[number])
            except (KeyboardInterrupt, Terminated):
                interrupted = True
            except Exception as exc:
                self.offline = sqlite_lock.is_locked(exc)  # the trials are stopped, the study not told
                raise
            finally:
                self._drop_spares()
                if self.running:  # Ctrl-C, SIGTERM or an error in the sweep itself
                    self._stop_all(stop.requested or signal.SIGTERM)
        if interrupted or stop.requested is not None:
            self.final_files(self.write("interrupted"))
            raise Interrupted(f"interrupted; the finished trials are kept: carry on with "
                              f"`dlcli sweep --resume {self.folder.path}`")
        completed = record_counts([t for t in self.trial_rows() if t["here"]]).get("completed", 0)
        record = self.write("completed" if completed else "failed")
        self.final_files(record)
        return record

    def _grid_done(self) -> int:
        return sum(1 for t in self.study.get_trials(deepcopy=False) if t.state.is_finished() and not t.user_attrs.get("interrupted"))

    def _free_slot(self) -> int:
        used = {t.slot for t in self.running.values()}
        return next(i for i in range(self.settings.parallel) if i not in used)

    def _launch(self, dists: dict, more: int) -> None:
        """Start a trial in a free slot (in that slot's spare process when it has one), and
        a spare for the slot's next trial when `more` trials are still to come."""
        trial = self.study.ask(dists)
        number = trial.number
        for key, value in (("sweep", self.folder.id), ("sweep_uid", self.uid), ("host", socket.gethostname()),
                           ("pid", os.getpid())):
            trial.set_user_attr(key, value)
        slot = self._free_slot()
        argv = ["train", str(self.folder.path / CONFIG_FILE), "--runs-dir", str(self.folder.path), "--json", "--quiet",
                "--set", f"name={self.config.name}-t{number:04d}",
                *[part for key, value in trial.params.items() for part in ("--set", override(key, value))]]
        log = self.logs / f"trial-{number:04d}.log"
        spare = self.spares.pop(slot, None)
        process, note = self._hand(spare, argv, log) if spare is not None else (None, None)
        if process is None:
            process, note, _ = self._spawn(slot, argv, log)
        trial.set_user_attr("cores", len(self._cores(slot) or self.cores))
        self.running[number] = TrialProcess(trial, process, slot, time.time(), log, note)
        if more > len(self.spares) and self.preload:
            self.spares[slot] = self._spawn(slot, None, self.logs / f"spare-{slot}-{number:04d}.log")
        self._say(f"trial {number} started: " + ", ".join(f"{short_key(k)}={_value(v)}" for k, v in trial.params.items()))
        self.write("running")

    def _spawn(self, slot: int, argv: list[str] | None, log: Path) -> tuple[subprocess.Popen, Path, Path]:
        """A `dlcli` process on `slot`'s cores: running `argv`, or (None) a spare that starts
        Keras and its backend, then waits for its argv on stdin (`await_trial`)."""
        note = log.with_suffix(".note")
        note.unlink(missing_ok=True)
        env = dict(self.env)
        part = handoff.Handoff(note=str(note), parent=os.getpid(), preload=self.preload if argv is None else None)
        cores = self._cores(slot)
        if cores is not None:
            for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[name] = str(len(cores))
            env["TF_NUM_INTEROP_THREADS"] = "1"
        with open(log, "wb") as handle:  # a new session: the sweep alone passes Ctrl-C on, once
            process = subprocess.Popen(handoff.child_command(part, argv or []), env=env,
                                       stdin=subprocess.DEVNULL if argv else subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=handle, start_new_session=True)
        if cores is not None:
            with contextlib.suppress(OSError):  # before the child starts its thread pools
                os.sched_setaffinity(process.pid, cores)
        return process, note, log

    def _hand(self, spare: tuple, argv: list[str], log: Path) -> tuple[subprocess.Popen | None, Path | None]:
        """Give a spare its trial; (None, None) when it is gone (a fresh process is started)."""
        process, note, spare_log = spare
        if process.poll() is not None:
            return None, None
        try:
            process.stdin.write((json.dumps(argv) + "\n").encode())
            process.stdin.close()
        except OSError:  # it died meanwhile
            with contextlib.suppress(OSError):
                process.kill()
            return None, None
        with contextlib.suppress(OSError):
            os.replace(spare_log, log)
        return process, note

    def _drop_spares(self) -> None:
        """Spares no trial will need: their stdin closes and they end."""
        for process, _, log in self.spares.values():
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()
            with contextlib.suppress(OSError):
                log.unlink()
                log.with_suffix(".note").unlink(missing_ok=True)
        self.spares.clear()

    def _cores(self, slot: int) -> list[int] | None:
        """The cores of `slot` when trials share the machine (None: one trial, every core)."""
        k = self.settings.parallel
        if k == 1 or not hasattr(os, "sched_setaffinity"):
            return None
        share = len(self.cores) // k
        return self.cores[slot * share:(slot + 1) * share] or [self.cores[slot % len(self.cores)]]

    def _follow(self, tp: TrialProcess) -> None:
        """Report the trial's new epochs to the pruner; stop it if pruned; finish it if done."""
        if tp.run is None:
            tp.run = _noted_run(tp.note)
            if tp.run is not None:
                tp.trial.set_user_attr("run", str(tp.run))
        code = tp.process.poll()
        if tp.run is not None and tp.pruned_at is None:
            self._report(tp, final=code is not None)
        if code is not None:
            self._finish(tp, code)

    def _report(self, tp: TrialProcess, final: bool) -> None:
        try:
            rows = RunFolder(tp.run).history()
        except (OSError, ConfigError):
            return
        for row in rows[tp.reported:]:
            value = row.get(self.target.metric)
            if isinstance(value, float) and math.isfinite(value):
                tp.trial.report(value, step=row["epoch"])
            tp.reported += 1
            if not final and tp.trial.should_prune():
                tp.pruned_at = row["epoch"]
                with contextlib.suppress(ProcessLookupError):
                    tp.process.send_signal(signal.SIGINT)
                self._say(f"trial {tp.trial.number} pruned at epoch {row['epoch']}: "
                          f"{self.target.metric} {value:.4g} trails the median")
                return

    def _finish(self, tp: TrialProcess, code: int) -> None:
        from optuna.trial import TrialState

        del self.running[tp.trial.number]
        output = _json_line(tp.process.stdout.read() if tp.process.stdout else b"")
        if tp.process.stdout:
            tp.process.stdout.close()
        trial, number = tp.trial, tp.trial.number
        trial.set_user_attr("duration_s", round(time.time() - tp.started, 2))
        if tp.run is None and output.get("run"):
            tp.run = Path(output["run"])
            trial.set_user_attr("run", str(tp.run))
        if tp.pruned_at is not None:
            trial.set_user_attr("epochs", tp.reported)
            self._tell(trial, state=TrialState.PRUNED)
        elif code == 0:
            rows = RunFolder(tp.run).history() if tp.run else []
            value = best_value(rows, self.target.metric, self.target.direction)
            trial.set_user_attr("epochs", len(rows))
            if value is None:
                trial.set_user_attr("error", f"history.csv has no finite '{self.target.metric}'")
                self._tell(trial, state=TrialState.FAIL)
            else:
                self._tell(trial, value)
        else:
            reason = output.get("error") or _log_reason(tp.log, code)
            trial.set_user_attr("error", first_line(RuntimeError(reason)))
            if code == 130:
                trial.set_user_attr("interrupted", True)
            self._tell(trial, state=TrialState.FAIL)
        tp.note.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if tp.log.stat().st_size == 0:
                tp.log.unlink()
        record = self.write("running")
        self._say_end(record, number)
        self.final_files(record, figures=False)

    def _stop_all(self, signum: int) -> None:
        """Pass the stop on to every trial in flight, wait for them to write their last
        epoch, and mark them lost (interrupted) in the study."""
        from optuna.trial import TrialState

        for tp in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                tp.process.send_signal(signum)
        deadline = time.time() + STOP_WAIT_S
        with held():
            for tp in list(self.running.values()):
                try:
                    tp.process.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    tp.process.kill()
                    tp.process.wait()
                if self.offline:  # the trial stays `running` in the study: --resume marks it lost
                    continue
                if tp.process.returncode == 0:  # it finished before the stop reached it: a result
                    self._follow(tp)
                    continue
                if tp.run is None:
                    tp.run = _noted_run(tp.note)
                with contextlib.suppress(Exception):
                    if tp.run is not None:
                        tp.trial.set_user_attr("run", str(tp.run))
                    tp.trial.set_user_attr("interrupted", True)
                    tp.trial.set_user_attr("duration_s", round(time.time() - tp.started, 2))
                    self._tell(tp.trial, state=TrialState.FAIL)
            self.running.clear()

    # -- the record
    def trial_rows(self) -> list[dict]:
        rows = []
        for t in self.study.get_trials(deepcopy=False):
            state = STATES.get(t.state.name, t.state.name.lower())
            if state == "failed" and t.user_attrs.get("interrupted"):
                state = "interrupted"
            run = t.user_attrs.get("run")
            rows.append({
                "number": t.number, "state": state, "params": t.params,
                "value": t.value if t.state.name == "COMPLETE" else None,
                "last_value": t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None,
                "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
                "duration_s": t.user_attrs.get("duration_s"),
                "run": os.path.relpath(run, self.folder.path) if run and _inside(run, self.folder.path) else run,
                "sweep": t.user_attrs.get("sweep"), "here": t.user_attrs.get("sweep_uid") == self.uid,
                "cores": t.user_attrs.get("cores"), "error": t.user_attrs.get("error"),
            })
        return rows

    def best(self, rows: list[dict]) -> dict | None:
        done = [r for r in rows if r["state"] == "completed" and r["value"] is not None]
        if not done:
            return None
        pick = max if self.target.direction == "max" else min
        top = pick(done, key=lambda r: r["value"])
        return {"trial": top["number"], "value": top["value"], "params": top["params"], "run": top["run"]}

    def write(self, status: str) -> dict:
        """Rewrite sweep.json: the status, the settings and every trial of the study."""
        rows = self.trial_rows()
        record = self.record
        record.update(
            status=status, pid=os.getpid(), host=socket.gethostname(),
            metric=self.target.metric, direction=self.target.direction,
            counts=record_counts([r for r in rows if r["here"]]),
            study_counts=record_counts(rows), best=self.best(rows), trials=rows,
        )
        if status != "running":
            record["ended"] = now_iso()
            record["duration_s"] = round(float(record.get("duration_before_s") or 0) + time.time() - self.began, 1)
        self.folder.write_json(SWEEP_FILE, record)
        return record

    def final_files(self, record: dict, figures: bool = True) -> None:
        """best.yaml as sweep.json `record` has the study (after each trial); history.png and
        importance.png (at the end: drawing, and Optuna's fANOVA, would take CPU from the trials)."""
        if record["best"] is not None:
            self.folder.write_text(BEST_FILE, self.best_yaml(record["best"]))
        if figures:
            with contextlib.suppress(Exception):  # a figure is a convenience: never the sweep's failure
                self._figures(record["trials"])

    def best_yaml(self, best: dict) -> str:
        """The best trial's resolved config (its run's config.yaml), named as the sweep's config."""
        run = best.get("run")
        text = None
        if run:
            path = Path(run) if os.path.isabs(run) else self.folder.path / run
            text = RunFolder(path).read_text("config.yaml")
        data = yaml.safe_load(text) if text else None
        if not isinstance(data, dict):  # the best trial ran elsewhere: its values on this config
            overrides = [override(k, v) for k, v in best["params"].items()]
            data = load_config(self.folder.path / CONFIG_FILE, overrides).to_dict()
        data["name"] = self.config.name
        head = (f"# The best trial of sweep {self.folder.id}: trial {best['trial']}, "
                f"{self.target.metric} = {best['value']:.6g}\n# Reproduce it with: dlcli train best.yaml\n")
        return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)

    def _figures(self, rows: list[dict]) -> None:
        from dlcli.runs.plots import importance_figure, sweep_figure

        figure = sweep_figure(rows, self.target.metric, self.target.direction, self.folder.id)
        self.folder.save("history.png", lambda tmp: figure.savefig(tmp, dpi=80))
        importances = self.importances()
        if importances:
            figure = importance_figure(importances, self.target.metric)
            self.folder.save("importance.png", lambda tmp: figure.savefig(tmp, dpi=80))
            self.record["importance"] = importances
            self.folder.write_json(SWEEP_FILE, self.record)

    def importances(self) -> dict | None:
        """Optuna's fANOVA importance of each parameter (None: too few completed trials)."""
        import optuna

        completed = [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        varied = [k for k in self.settings.space if len({repr(t.params.get(k)) for t in completed}) > 1]
        if len(completed) < 2 or not varied:
            return None
        try:
            found = optuna.importance.get_param_importances(self.study, params=varied)
        except (RuntimeError, ValueError):
            return None
        return {k: round(float(v), 4) for k, v in found.items()}

    # -- what the user sees
    def _say(self, line: str) -> None:
        if self.progress and self.console is not None:
            self.console.print(line, highlight=False, markup=False)

    def _say_start(self, remaining: int) -> None:
        s = self.settings
        self._say(f"sweep {self.folder.id}: {remaining} trial(s), {s.parallel} at a time; "
                  f"{self.target.metric} ({self.target.direction}), sampler {s.sampler}, pruner {s.pruner}")

    def _say_end(self, record: dict, number: int) -> None:
        row = next((r for r in record["trials"] if r["number"] == number), None)
        if row is None:
            return
        best = record["best"]
        tail = f"  (best {best['value']:.4g}, trial {best['trial']})" if best else ""
        took = f"  {row['duration_s']:.1f} s" if row["duration_s"] is not None else ""
        if row["state"] == "completed":
            self._say(f"trial {row['number']} completed: {self.target.metric} {row['value']:.4g}{took}{tail}")
        elif row["state"] in ("failed", "interrupted"):
            self._say(f"trial {row['number']} {row['state']}: {row['error'] or 'no reason given'}{took}")


def preload_spec(config: Config) -> str:
    """What a spare trial process starts before its trial is known: `BACKEND:DETERMINISTIC`,
    or '' (no spares) when the trials may differ in backend (the space changes `runtime.*`
    or a layer's type, and `auto` may choose differently)."""
    keys = list(config.sweep.space) if config.sweep else []
    if any(k.startswith("runtime.") or k.endswith(".type") or k.startswith("model.layers.") and k.count(".") == 2
           for k in keys):
        return ""
    from dlcli.runtime.backend import choose_backend

    try:
        backend, _ = choose_backend(config.runtime, [layer.type for layer in config.model.layers])
    except ConfigError:
        return ""
    return f"{backend}:{int(config.runtime.deterministic)}"


def await_trial() -> None:
    """In a spare trial process (`handoff.current.preload`): start Keras on the sweep's
    backend while the trial before it trains, then take this trial's arguments from stdin
    and run it as `dlcli ARGV`. End quietly when the sweep needs no more trials (stdin closes)."""
    spec = handoff.current.preload or ""
    handoff.current = dataclasses.replace(handoff.current, preload=None)
    backend, _, deterministic = spec.partition(":")
    with contextlib.suppress(ConfigError):  # the trial itself reports what went wrong
        from dlcli.runtime.backend import import_keras

        import_keras(backend, deterministic=deterministic == "1")
    line = sys.stdin.readline()
    if not line.strip():
        os._exit(0)
    sys.argv = [sys.argv[0], *json.loads(line)]


def record_counts(rows: list[dict]) -> dict:
    """Trials by state, in the order completed, pruned, failed, interrupted, running."""
    order = ("completed", "pruned", "failed", "interrupted", "running", "waiting")
    states = [row["state"] for row in rows]
    return {state: states.count(state) for state in sorted(set(states), key=lambda s: (order + (s,)).index(s))}


def best_value(rows: list[dict], metric: str, way: str) -> float | None:
    """The best finite value of a history column over the epochs (what the trial scores)."""
    values = [r[metric] for r in rows if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
    if not values:
        return None
    return max(values) if way == "max" else min(values)


def _inside(path: str, folder: Path) -> bool:
    with contextlib.suppress(ValueError):
        Path(path).resolve().relative_to(folder.resolve())
        return True
    return False


def _noted_run(note: Path) -> Path | None:
    """The run folder a trial named in its note (`dlcli.training.distributed.note`), once it has one."""
    noted = read_note(note).get("run")
    return Path(noted) if noted else None


def _json_line(data: bytes) -> dict:
    for line in reversed(data.decode(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                return parsed
    return {}


def _log_reason(log: Path, code: int) -> str:
    """Why a trial's process ended without saying so: its signal, or its last error line."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"its process was killed by {signal.Signals(-code).name} (out of memory?)"
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        for line in reversed(lines):
            if line.startswith("error:") or "Error" in line:
                return line.removeprefix("error:").strip()
    return f"its process ended with exit code {code}; see {log}"


def sweep_record(folder: RunFolder) -> dict:
    """sweep.json's record ({} when missing or unreadable); a ConfigError when it holds
    JSON that is not an object (an edited or damaged file)."""
    record = folder.read_json(SWEEP_FILE)
    if record is not None and not isinstance(record, dict):
        raise ConfigError(Problem(
            f"is damaged (a JSON {type(record).__name__}, not an object), so the sweep cannot be continued; "
            "restore it, or start a new sweep", where=str(folder.path / SWEEP_FILE)))
    return record or {}


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- the command ---------------------------------------------------------------------------

def run_sweep(config: str | os.PathLike | None = None, overrides=(), runs_dir=None, trials: int | None = None,
              parallel: int | None = None, storage: str | None = None, resume=None, console=None,
              progress: bool = True) -> SweepResult:
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
            raise ConfigError(Problem("--resume carries a sweep on with its own config.yaml; give no CONFIG or "
                                      "--set (start a new sweep to change them)", where="--resume"))
        sweeper, target_trials = _reopen(resume, runs_dir, trials, parallel, storage, console, progress)
    else:
        if config is None:
            raise ConfigError("give a CONFIG with a sweep: section, or --resume SWEEP")
        sweeper, target_trials = _start(config, overrides, runs_dir, trials, parallel, storage, console, progress)
    record = sweeper.run(target_trials)
    result = SweepResult(sweeper.folder, record)
    sweeper.folder.unlock()
    if record.get("status") == "failed":
        counts = ", ".join(f"{n} {s}" for s, n in record.get("counts", {}).items()) or "none ran"
        errors = [t["error"] for t in record["trials"] if t.get("here") and t.get("error")]
        cause = f"; first error: {errors[0]}" if errors else ""
        raise RunFailed(f"no trial completed ({counts}){cause}; see {sweeper.folder.path / SWEEP_FILE}",
                        payload=result.summary())
    return result


def _settings(config: Config, trials: int | None, parallel: int | None) -> SweepConfig:
    settings = config.sweep.model_copy(deep=True)
    if trials is not None:
        settings.trials = trials
    if parallel is not None:
        settings.parallel = parallel
    return settings


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _check_parallel(parallel: int, where: str) -> None:
    cores = len(usable_cores())
    if parallel > cores:
        raise ConfigError(Problem(
            f"{parallel} trials at once is more than the {cores} cores this process may use (each trial needs one "
            f"of its own); give at most {cores}, or share a --storage between machines", where=where))


def _start(source, overrides, runs_dir, trials, parallel, storage, console, progress) -> tuple[Sweeper, int]:
    config = load_config(source, overrides)
    if config.sweep is None:
        raise ConfigError(Problem("has no sweep: section; add one with the keys to search under sweep.space "
                                  "(README, Tuning)", where=str(source)))
    settings = _settings(config, trials, parallel)
    _check_parallel(settings.parallel, "--parallel" if parallel is not None else config.where(("sweep", "parallel")))
    environment = dict(os.environ)  # what the trials start with, before Keras is imported here
    problems, target = check_space(config, source, overrides)
    if problems:
        raise ConfigError(problems)
    record = {
        "name": config.name, "uid": uuid.uuid4().hex, "status": "starting", "started": now_iso(), "pid": os.getpid(),
        "host": socket.gethostname(), "command": " ".join(["dlcli", *sys.argv[1:]]) if sys.argv else None,
        "config": str(source), "sweep": json.loads(json.dumps(settings.model_dump(mode="json"))),
        "metric": target.metric, "direction": target.direction,
        "storage": _safe_storage(storage) if storage else STUDY_FILE, "study": config.name,
    }
    folder = RunFolder.create(runs_dir_from(runs_dir), f"{config.name}-sweep", record=record,
                              files={CONFIG_FILE: config.to_yaml()}, record_file=SWEEP_FILE)
    url = storage or f"sqlite:///{(folder.path / STUDY_FILE).resolve()}"
    sweeper = Sweeper(folder, config, settings, target, url, console, progress)
    sweeper.env = environment
    sweeper.open_study(fresh=True)
    return sweeper, settings.trials


def _reopen(ref, runs_dir, trials, parallel, storage, console, progress) -> tuple[Sweeper, int]:
    folder = find_sweep(ref, runs_dir)
    folder.lock()
    record = sweep_record(folder)
    config = load_config(folder.path / CONFIG_FILE)
    try:
        config.sweep = SweepConfig.model_validate(record.get("sweep") or {})
    except ValueError:  # pydantic's ValidationError
        raise ConfigError(Problem("holds no readable sweep settings: it is damaged or not a sweep folder dlcli "
                                  "wrote; start a new sweep", where=str(folder.path / SWEEP_FILE))) from None
    settings = _settings(config, trials, parallel)
    _check_parallel(settings.parallel, "--parallel")
    recorded = record.get("storage") or STUDY_FILE
    if storage is None and recorded != STUDY_FILE and "***" in recorded:
        raise ConfigError(Problem("the sweep's storage needs its password: give --storage again", where="--resume"))
    url = storage or (f"sqlite:///{(folder.path / STUDY_FILE).resolve()}" if recorded == STUDY_FILE else recorded)
    target = Target(record.get("metric") or "val_loss", record.get("direction") or "min")
    record.update(sweep=settings.model_dump(mode="json"), resumes=int(record.get("resumes", 0)) + 1,
                  duration_before_s=float(record.get("duration_s") or 0))
    folder.write_json(SWEEP_FILE, record)
    sweeper = Sweeper(folder, config, settings, target, url, console, progress)
    sweeper.open_study(fresh=False)
    return sweeper, settings.trials


__all__ = ["SweepResult", "check_space", "distributions", "override", "run_sweep"]
