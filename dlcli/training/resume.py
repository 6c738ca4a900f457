"""The rules of `train --resume`: what may change, which runs may be continued, and what is
brought back.

Only `training.epochs` and `runtime.*` may differ from the run's config (`RESUMABLE_KEYS`);
a run still being trained by a live process is refused; `training.epochs` is the total and
must exceed the epochs done, except for a run that stopped after its last epoch (or after
early stopping ended it) without being completed: resuming that one trains nothing and
finishes it (score, save, write), as the uninterrupted run did. A completed run that early
stopping ended is complete: it is not resumed. What comes back is the last checkpointed epoch
(`dlcli.training.checkpoint`): weights, optimizer, learning rate, RNG state, and the callbacks'
state, handed to `dlcli.training.callbacks.Restorer`. history.csv keeps the rows of completed
epochs; a row written after the last checkpoint (a kill between the two) is dropped and
trained again.
"""

from __future__ import annotations

import os

from dlcli.config.text import config_differences, resumable, safe_load
from dlcli.data.sources.datafile import changed_files
from dlcli.errors import ConfigError, Problem, first_line
from dlcli.runs.runfolder import RunFolder
from dlcli.training import checkpoint


def check(run: RunFolder, config) -> None:
    """ConfigError unless `config` may continue `run`."""
    if not isinstance(run.read_json("run.json"), dict):
        raise ConfigError(
            Problem(
                "run.json is missing or damaged (not a JSON object), so the run cannot be "
                "continued; start a new run",
                where=str(run.file("run.json")),
            )
        )
    text = run.read_text("config.yaml")
    try:
        before = safe_load(text) if text is not None else None
    except Exception:  # noqa: BLE001 - YAML errors of any kind: the file is not dlcli's
        before = None
    if not isinstance(before, dict):
        raise ConfigError(
            Problem(
                "config.yaml is missing or damaged, so the run cannot be continued; "
                "start a new run",
                where=str(run.path),
            )
        )
    changed = [key for key in config_differences(before, config.to_dict()) if not resumable(key)]
    if changed:
        raise ConfigError(
            Problem(
                "--resume may change only training.epochs and runtime.*; these differ from the run: "
                + ", ".join(changed)
                + "; start a new run instead",
                where=str(run.path),
            )
        )
    record = run.record
    if record.effective_status == "running" and record.pid != os.getpid():
        raise ConfigError(
            Problem(f"the run is still being trained by process {record.pid}", where=str(run.path))
        )


def check_data(run: RunFolder) -> None:
    """ConfigError when a data file the run was trained on changed since (its SHA-256 is not
    the one run.json records): the rest of the run would train on other samples, and a table's
    columns or categories may no longer fit the checkpoint."""
    changed = changed_files(run.record.data.files)
    if changed:
        raise ConfigError(
            Problem(
                f"changed since run {run.id} was trained (its SHA-256 is not the one run.json records); a resumed run "
                "must train on the data it started with: restore the file, or start a new run",
                where=changed[0],
            )
        )


def restore(run: RunFolder, config, model, keras) -> tuple[dict | None, list[dict], bool]:
    """Load the last completed epoch into `model`; return (state.json, history rows,
    finishing), where `finishing` says training is over and only the final phase is left.

    (None, [], False) when no epoch completed: the run starts cleanly in the same folder."""
    run.remove_temp_files()
    saved = checkpoint.read(run)
    if saved is None:
        run.rewrite_history([])
        return None, [], False
    completed, total = int(saved["epoch"]), config.training.epochs
    stopped = saved.get("finished") is True
    if run.record.effective_status == "completed":
        if stopped:
            raise ConfigError(
                Problem(
                    f"the run is complete: early stopping ended it at epoch {completed}, and a resumed run ends "
                    "where the uninterrupted one does; start a new run to train longer",
                    where=str(run.path),
                )
            )
        if completed >= total:
            raise ConfigError(
                Problem(
                    f"the run already has {completed} epochs; raise the total: --set training.epochs={completed + 10}",
                    where=str(run.path),
                )
            )
    elif completed > total and not stopped:
        raise ConfigError(
            Problem(
                f"the run already has {completed} epochs, more than training.epochs={total}; "
                f"resume with --set training.epochs={completed} or more",
                where=str(run.path),
            )
        )
    try:
        checkpoint.load_into(keras, model, run, saved)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign checkpoint file
        raise ConfigError(
            Problem(
                f"the checkpoint of epoch {completed} cannot be loaded ({first_line(exc)[:200]}); start a new run",
                where=str(run.file(checkpoint.FOLDER)),
            )
        ) from None
    rows = [r for r in run.history() if r["epoch"] <= completed]
    run.rewrite_history(rows)
    return saved, rows, stopped or completed >= total
