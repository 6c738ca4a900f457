"""The rules of `train --resume`: what may change, which runs may be continued, and what is
brought back.

Only `training.epochs` and `runtime.*` may differ from the run's config (`RESUMABLE_KEYS`);
a run still being trained by a live process is refused; `training.epochs` is the total and
must exceed the epochs done. What comes back is the last checkpointed epoch
(`dlcli.checkpoint`): weights, optimizer, learning rate, RNG state, and the callbacks'
state, handed to `dlcli.callbacks.Restorer`. history.csv keeps the rows of completed
epochs; a row written after the last checkpoint (a kill between the two) is dropped and
trained again.
"""

from __future__ import annotations

import os

from dlcli import checkpoint
from dlcli.config_text import config_differences, resumable, safe_load
from dlcli.errors import ConfigError, Problem
from dlcli.runfolder import RunFolder, effective_status


def check(run: RunFolder, config) -> None:
    """ConfigError unless `config` may continue `run`."""
    before = safe_load(run.file("config.yaml").read_text()) or {}
    changed = [key for key in config_differences(before, config.to_dict()) if not resumable(key)]
    if changed:
        raise ConfigError(Problem(
            "--resume may change only training.epochs and runtime.*; these differ from the run: "
            + ", ".join(changed) + "; start a new run instead", where=str(run.path),
        ))
    if effective_status(run.record) == "running" and run.record.get("pid") != os.getpid():
        raise ConfigError(Problem(f"the run is still being trained by process {run.record['pid']}", where=str(run.path)))


def restore(run: RunFolder, config, model, keras) -> tuple[dict | None, list[dict]]:
    """Load the last completed epoch into `model`; return (state.json, history rows).

    (None, []) when no epoch completed: the run starts cleanly in the same folder."""
    run.remove_temp_files()
    saved = checkpoint.read(run)
    if saved is None:
        run.rewrite_history([])
        return None, []
    completed = int(saved["epoch"])
    if completed >= config.training.epochs:
        raise ConfigError(Problem(
            f"the run already has {completed} epochs; raise the total: --set training.epochs={completed + 10}",
            where=str(run.path),
        ))
    checkpoint.load_into(keras, model, run, saved)
    rows = [r for r in run.history() if r["epoch"] <= completed]
    run.rewrite_history(rows)
    return saved, rows
