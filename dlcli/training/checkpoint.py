"""The checkpoint format: what a run's `checkpoints/` holds so `--resume` can continue it.

- `epoch-NNNN.keras`: the model and its optimizer state at the last completed epoch
  (Keras's own format);
- `best-NNNN.npz`: early stopping's best weights (`get_weights` order), when it keeps any;
- `state.json`: the commit point that names them, with the epoch, time, learning rate, the
  callbacks' state (Keras's BackupAndRestore keeps none: keras-team/keras#14862) and the
  layers' random-number state (Keras does not save Dropout's seed generators).

Files are written first and `state.json` last, so a kill between writes leaves the
previous, consistent checkpoint in force. `Snapshot` is an epoch held in memory until it is
written (dlcli writes at most every few seconds, at the end and on interrupt).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dlcli.runs.runfolder import RunFolder, now_iso
from dlcli.runtime import compat

FOLDER = "checkpoints"
STATE = f"{FOLDER}/state.json"
# The only names dlcli writes in checkpoints/ besides state.json, and so the only ones it deletes.
CHECKPOINT_NAME = re.compile(r"^epoch-\d{4,}\.keras$")
BEST_NAME = re.compile(r"^best-\d{4,}\.npz$")


@dataclass
class Snapshot:
    """One completed epoch, in memory: what `write` puts on disk."""

    epoch: int
    lr: float
    weights: list
    optimizer: list
    rng: list
    callbacks: dict
    best_weights: list | None = None
    best_epoch: int | None = None
    finished: bool = False  # early stopping ended training at this epoch


def values(keras, model) -> tuple[list, list]:
    """The model's weights and optimizer variables as numpy arrays (what `assign` restores)."""
    return model.get_weights(), [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def assign(model, weights, optimizer_values) -> None:
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_values):
        variable.assign(value)


def take(
    keras,
    model,
    epoch: int,
    lr: float,
    callbacks: dict,
    best_weights=None,
    best_epoch=None,
    finished: bool = False,
) -> Snapshot:
    weights, optimizer = values(keras, model)
    rng = [keras.ops.convert_to_numpy(v).tolist() for v in compat.seed_states(model)]
    return Snapshot(
        epoch, lr, weights, optimizer, rng, callbacks, best_weights, best_epoch, finished
    )


def write(keras, run: RunFolder, model, snap: Snapshot, current: bool) -> None:
    """Put `snap` in checkpoints/; `current` says the model still holds its weights (else
    they are swapped in for the save and back out after)."""
    folder = run.folder(FOLDER)
    if not current:  # the model has moved on (interrupt) or back (best weights)
        now = values(keras, model)
        assign(model, snap.weights, snap.optimizer)
    name = f"epoch-{snap.epoch:04d}.keras"
    try:
        run.save(f"{FOLDER}/{name}", model.save)
    finally:
        if not current:
            assign(model, *now)
    best = None
    if snap.best_weights is not None:
        best = f"best-{snap.best_epoch:04d}.npz"
        if not run.file(f"{FOLDER}/{best}").exists():
            run.save(f"{FOLDER}/{best}", lambda tmp: _save_arrays(tmp, snap.best_weights))
    run.write_json(
        STATE,
        {
            "epoch": snap.epoch,
            "time": now_iso(),
            "lr": snap.lr,
            **snap.callbacks,
            "checkpoint": name,
            "best_weights": best,
            "rng": snap.rng,
            "finished": snap.finished,
        },
    )
    for stale in sorted(p.name for p in folder.iterdir()):
        if stale not in (name, best) and (CHECKPOINT_NAME.match(stale) or BEST_NAME.match(stale)):
            run.remove(f"{FOLDER}/{stale}")


def _save_arrays(path, arrays: list) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **{f"w{i}": a for i, a in enumerate(arrays)})


def read(run: RunFolder) -> dict | None:
    """state.json when it is dlcli's and the checkpoint it names is there (None: no
    completed epoch)."""
    state = run.read_json(STATE)
    if not isinstance(state, dict):
        return None
    name, best = state.get("checkpoint"), state.get("best_weights")
    if not (isinstance(name, str) and CHECKPOINT_NAME.match(name)) or not isinstance(
        state.get("epoch"), int
    ):
        return None
    if best is not None and not (isinstance(best, str) and BEST_NAME.match(best)):
        return None
    if not run.file(f"{FOLDER}/{name}").is_file():
        return None
    return state


def load_into(keras, model, run: RunFolder, state: dict) -> None:
    """Weights, optimizer state, learning rate and RNG state of the checkpointed epoch."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(run.file(f"{FOLDER}/{state['checkpoint']}"))
    model.optimizer.learning_rate = state.get(
        "lr", float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    )
    for variable, value in zip(compat.seed_states(model), state.get("rng") or []):
        variable.assign(value)


def best_weights(run: RunFolder, state: dict) -> list | None:
    """Early stopping's best weights named by `state`, if they are there."""
    if not state.get("best_weights"):
        return None
    path = run.file(f"{FOLDER}/{state['best_weights']}")
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as arrays:
        return [arrays[f"w{i}"] for i in range(len(arrays.files))]
