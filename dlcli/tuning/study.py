"""A sweep's Optuna study: its storage, sampler and pruner, and what the sweep asks of it.

The study lives in a database (SQLite `study.db` in the sweep folder, or any `--storage`
URL), so several `dlcli sweep` processes can share one and a killed sweep resumes from it.
Each trial carries user attributes that say which sweep folder ran it (`sweep`, `sweep_uid`),
its run folder, and whether the sweep stopped it (`interrupted`): sweep.json's rows are read
from them (`dlcli.tuning.record.TrialRow.from_trial`).

This module does not run trials (`dlcli.tuning.trials`) nor decide when to ask and tell
(`dlcli.tuning.sweep`). Optuna is imported inside each function.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from pathlib import Path

from dlcli.config.schema import SweepConfig
from dlcli.config.space import grid
from dlcli.errors import ConfigError, Problem, first_line
from dlcli.tuning import sqlite_lock
from dlcli.tuning.preflight import Target

STUDY_FILE = "study.db"
STORAGE_ATTEMPTS = 8
CONNECT_TIMEOUT_S = 10  # seconds to connect to a PostgreSQL server
# The median pruner waits for this many completed trials, and for a trial's second epoch,
# before it stops anything: fewer and it prunes on noise.
PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS = 3, 2


def own_storage(folder: Path) -> str:
    """The URL of a sweep folder's own study database."""
    return f"sqlite:///{(folder / STUDY_FILE).resolve()}"


def safe_storage(url: str) -> str:
    """The storage URL as sweep.json may keep it: without a password."""
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    return url


def optuna_direction(target: Target) -> str:
    return "maximize" if target.direction == "max" else "minimize"


def load_or_create(url: str, name: str, settings: SweepConfig, target: Target, seed: int):
    """Open the study `name` in the storage at `url`, or create it; a ConfigError when the
    study there searches another space or direction. `seed` seeds the sampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = _storage(optuna, url)
    existing = name in [s.study_name for s in optuna.get_all_study_summaries(storage)]
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=optuna_direction(target),
        sampler=_sampler(settings, seed),
        pruner=_pruner(settings),
        load_if_exists=True,
    )
    space = json.loads(json.dumps(settings.space))
    if existing:
        theirs = study.user_attrs.get("dlcli_space")
        if study.direction.name.lower() != optuna_direction(target) or (
            theirs is not None and theirs != space
        ):
            raise ConfigError(
                Problem(
                    f"the study '{name}' in this storage searches another space or direction; give the sweep "
                    "another name (name: or --set name=...) or the same sweep: section",
                    where=safe_storage(url),
                )
            )
    else:
        study.set_user_attr("dlcli_space", space)
        study.set_user_attr("dlcli_metric", target.metric)
    return study


def _storage(optuna, url: str):
    """The RDB storage; two sweeps that create one database at the same moment race to
    write its schema, so the loser tries again, for `sqlite_lock.WAIT_S` at most (a lock
    another process keeps is the caller's error)."""
    sqlite = url.startswith("sqlite")
    connect = (
        {"timeout": sqlite_lock.WAIT_S}
        if sqlite
        else {"connect_timeout": CONNECT_TIMEOUT_S}  # a silent database server never hangs
        if url.startswith("postgresql")
        else {}
    )
    began = time.monotonic()
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect})
        except Exception as exc:  # a bad URL, a missing driver, a refused connection, a lock
            racing = any(
                word in str(exc)
                for word in ("IntegrityError", "UNIQUE constraint", "already exists", "locked")
            )
            if (
                racing
                and attempt < STORAGE_ATTEMPTS - 1
                and time.monotonic() - began < sqlite_lock.WAIT_S
            ):
                time.sleep(0.2 * (attempt + 1))
                continue
            if sqlite_lock.is_locked(exc):
                raise
            raise ConfigError(
                Problem(
                    f"cannot open the study's storage: {first_line(exc)}; give --storage "
                    "sqlite:///PATH or postgresql://USER@HOST/DB (pip install 'psycopg[binary]')",
                    where=safe_storage(url),
                )
            ) from None
    raise AssertionError("unreachable")


def _sampler(settings: SweepConfig, seed: int):
    import optuna

    seed %= 2**32
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler(grid(settings.space)[0], seed=seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(settings: SweepConfig):
    import optuna

    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
    )


def tell(study, trial, value=None, state=None) -> None:
    """study.tell; the grid sampler's `study.stop()` once its grid is done is meant for
    `study.optimize` and raises here after the trial is stored: the loop counts trials itself."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def fail_stale(study, uid: str) -> None:
    """Trials of the sweep `uid` left `running` by a killed sweep: lost, so marked failed."""
    from optuna.trial import TrialState

    from dlcli.runtime import compat

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.user_attrs.get("sweep_uid") == uid:
            trial = compat.study_trial(study, frozen)
            trial.set_user_attr("interrupted", True)
            tell(study, trial, state=TrialState.FAIL)


def requeue_lost_points(study) -> int:
    """A grid sweep's points whose only trials were lost (interrupted, or left running by a
    killed sweep), queued again so the next trials run them: Optuna's grid counts a lost
    trial's point as visited, and would otherwise repeat a finished point in its place.
    Returns how many were queued."""
    from optuna.trial import TrialState

    def key(params: dict) -> str:
        return repr(sorted(params.items()))

    trials = study.get_trials(deepcopy=False)
    done = {
        key(t.params)
        for t in trials
        if t.state in (TrialState.WAITING, TrialState.RUNNING)
        or (t.state.is_finished() and not t.user_attrs.get("interrupted"))
    }
    queued = 0
    for t in trials:
        if t.user_attrs.get("interrupted") and t.params and key(t.params) not in done:
            study.enqueue_trial(dict(t.params), skip_if_exists=False)
            done.add(key(t.params))
            queued += 1
    return queued


def finished_here(study, uid: str) -> int:
    """Trials the sweep `uid` ran to an end (completed, pruned or failed; not lost)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("sweep_uid") == uid
        and t.state.is_finished()
        and not t.user_attrs.get("interrupted")
    )


def finished_in_study(study) -> int:
    """Trials of the whole study run to an end (what a grid counts against its size)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not t.user_attrs.get("interrupted")
    )


def importances(study, keys) -> dict | None:
    """Optuna's fANOVA importance of each of `keys` that varied (None: too few completed trials)."""
    import optuna

    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    varied = [k for k in keys if len({repr(t.params.get(k)) for t in completed}) > 1]
    if len(completed) < 2 or not varied:
        return None
    try:
        found = optuna.importance.get_param_importances(study, params=varied)
    except (RuntimeError, ValueError):
        return None
    return {k: round(float(v), 4) for k, v in found.items()}
