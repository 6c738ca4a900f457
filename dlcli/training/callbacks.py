"""dlcli's own Keras callbacks, each keeping its state on itself, and the list a run trains with.

- `Recorder`: per epoch, one history row (every metric, `lr`, `epoch_time_s`), a NaN/inf
  guard, and a snapshot of the epoch that goes to `checkpoints/` (`dlcli.training.checkpoint`) at
  most every `CHECKPOINT_INTERVAL_S`, at the end of training and on interrupt, so small
  models do not spend their time saving. It runs after EarlyStopping and ReduceLROnPlateau,
  so the state it saves is the epoch's.
- `Restorer`: on `--resume`, puts EarlyStopping's and ReduceLROnPlateau's saved state back
  after their `on_train_begin` reset it.
- `callbacks_for`: the configured callbacks in order (early stopping, reduce-LR, the extra
  `training.callbacks` by name, recorder, restorer, TensorBoard scalars, progress).
- `EpochBoard`: TensorBoard's epoch scalars without TensorFlow (`dlcli.runs.board`).
- `EpochTrack`: each history row to the run's MLflow run (`dlcli.training.track`).
- `EpochSeed`: each epoch's shuffle a function of the seed and the epoch (resumes repeat it).

A new callback: a class here (or a Keras one named in `training.callbacks`), added in
`callbacks_for`. This module subclasses Keras's `Callback`, so it is imported only after
`dlcli.runtime.keras_import.import_keras` has chosen the backend (as `dlcli.training.session` does).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from dlcli.model.checks import PATH_ARGUMENTS
from dlcli.runs.runfolder import RunFolder
from dlcli.runtime import compat, keras_names
from dlcli.runtime.keras_import import keras_module
from dlcli.training import checkpoint

keras = keras_module()

CHECKPOINT_INTERVAL_S = 2.0


def callback_state(es, rlr) -> dict:
    """EarlyStopping's and ReduceLROnPlateau's counters, as state.json keeps them."""
    out = {}
    if es is not None:
        state = compat.early_stopping_state(es)
        out["early_stopping"] = {**state, "best": _float(state["best"])}
    if rlr is not None:
        state = compat.reduce_lr_state(rlr)
        out["reduce_lr_on_plateau"] = {**state, "best": _float(state["best"])}
    return out


def _float(value):
    return None if value is None else float(value)


class Recorder(keras.callbacks.Callback):
    """History rows, the NaN guard and epoch snapshots of one run.

    Attributes:
        rows: every history row so far (those of earlier sessions on `--resume` first).
        diverged: the epoch whose loss became NaN/inf, or None.
        best_epoch: early stopping's best epoch when it restores best weights, else None.
    """

    def __init__(
        self,
        run: RunFolder,
        rows: list[dict],
        es=None,
        rlr=None,
        interval: float = CHECKPOINT_INTERVAL_S,
    ):
        super().__init__()
        self.run, self.rows, self.es, self.rlr, self.interval = run, list(rows), es, rlr, interval
        self.diverged = None
        self.best_epoch = None
        self.snapshot = None
        self.stop = None  # a signals.StopRequest while fit runs: a stopped epoch is not recorded
        self.written_at = time.perf_counter()

    @property
    def epochs_run(self) -> int:
        return len(self.rows)

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True  # stop now; on_epoch_end records the epoch

    def cut(self) -> bool:
        """Whether a stop request (Ctrl-C, SIGTERM) has cut the current epoch short."""
        return self.stop is not None and self.stop.requested is not None

    def on_epoch_end(self, epoch, logs=None):
        if self.cut():
            return  # Keras ends the epoch early on a stop request: not a completed epoch
        logs = dict(logs or {})
        logs.pop("learning_rate", None)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        row["lr"] = lr
        row["epoch_time_s"] = round(time.perf_counter() - self.started, 4)
        self.run.append_history(row)
        self.rows.append(row)
        es = self.es
        if es is not None and es.restore_best_weights:
            self.best_epoch = es.best_epoch + 1
        if not all(math.isfinite(v) for k, v in row.items() if k.endswith("loss")):
            self.diverged = epoch + 1
            self.model.stop_training = True
            return
        self.snapshot = checkpoint.take(
            keras,
            self.model,
            epoch + 1,
            lr,
            callback_state(es, self.rlr),
            best_weights=compat.best_weights(es) if es is not None else None,
            best_epoch=es.best_epoch + 1 if es is not None else None,
            finished=bool(self.model.stop_training),  # early stopping (or a callback) ends it here
        )
        if time.perf_counter() - self.written_at >= self.interval:
            self.write(current=True)

    def on_train_end(self, logs=None):
        self.write()  # EarlyStopping may have restored best weights: write the snapshot

    def write(self, current: bool = False):
        """Put the last completed epoch in checkpoints/ (nothing when it is there already)."""
        snap, self.snapshot = self.snapshot, None
        if snap is not None:
            checkpoint.write(keras, self.run, self.model, snap, current)
            self.written_at = time.perf_counter()


class Restorer(keras.callbacks.Callback):
    """Puts the callbacks' saved state (state.json) back after on_train_begin reset it."""

    def __init__(self, run: RunFolder, saved: dict, es=None, rlr=None):
        super().__init__()
        self.run, self.saved, self.es, self.rlr = run, saved, es, rlr

    def on_train_begin(self, logs=None):
        saved, es, rlr = self.saved, self.es, self.rlr
        if es is not None and "early_stopping" in saved:
            best = checkpoint.best_weights(self.run, saved) if es.restore_best_weights else None
            compat.restore_early_stopping(es, saved["early_stopping"], best)
        if rlr is not None and "reduce_lr_on_plateau" in saved:
            compat.restore_reduce_lr(rlr, saved["reduce_lr_on_plateau"])


class EpochSeed(keras.callbacks.Callback):
    """numpy's global RNG seeded from (seed, epoch) as each epoch begins. Keras shuffles
    in-memory arrays on JAX and torch with `np.random.permutation` as an epoch starts, so an
    epoch's order is then the same whether the run was resumed before it or not."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        np.random.seed([self.seed % 2**32, epoch])


class EpochBoard(keras.callbacks.Callback):
    """`output.tensorboard`: each epoch's metrics and learning rate as TensorBoard scalars,
    as Keras's `TensorBoard` callback writes them (`epoch_<metric>` under train/ and
    validation/), through `dlcli.runs.board` so that no backend imports TensorFlow for it."""

    def __init__(self, folder: Path):
        super().__init__()
        from dlcli.runs.board import ScalarBoard

        self.board = ScalarBoard(folder)

    def on_epoch_end(self, epoch, logs=None):
        logs = {
            k: v
            for k, v in (logs or {}).items()
            if isinstance(v, (int, float)) or hasattr(v, "__float__")
        }
        train = {
            f"epoch_{k}": v
            for k, v in logs.items()
            if not k.startswith("val_") and k != "learning_rate"
        }
        rate = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
        if rate is not None:
            try:
                train["epoch_learning_rate"] = float(keras.ops.convert_to_numpy(rate))
            except (TypeError, ValueError):  # a schedule object: its value is not a number here
                pass
        self.board.scalars("train", epoch, train)
        val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        if val:
            self.board.scalars("validation", epoch, val)

    def on_train_end(self, logs=None):
        self.board.close()


class EpochTrack(keras.callbacks.Callback):
    """Each history row the recorder adds goes to the MLflow run (handed over: the tracker's
    worker process sends it); run.json names the MLflow run as soon as it exists."""

    def __init__(self, tracker, recorder: Recorder):
        super().__init__()
        self.tracker, self.recorder = tracker, recorder
        self.sent = len(recorder.rows)
        self.named = False

    def on_epoch_end(self, epoch, logs=None):
        for row in self.recorder.rows[self.sent :]:
            self.tracker.epoch(row)
        self.sent = len(self.recorder.rows)
        if not self.named and self.tracker.run_id is not None:
            self.named = True
            self.recorder.run.update(mlflow=self.tracker.record())


def close_boards(callbacks: list) -> None:
    """Let every `EpochBoard` write what it holds (a run that ends early skips on_train_end)."""
    for callback in callbacks:
        if isinstance(callback, EpochBoard):
            callback.board.close()


def _inside(run: RunFolder, name: str):
    """`name` in the run folder, its folders made, refused (`UnsafeRunFolder`) when a link
    on its way would lead out; a name with `{epoch}`-style fields is checked up to its
    first field."""
    fixed = name.split("{", 1)[0]
    checked = (
        fixed
        if "{" not in name
        else (fixed.rstrip("/") if fixed.endswith("/") else str(Path(fixed).parent))
    )
    if checked not in ("", "."):
        run.file(checked)
        parent = Path(checked) if "{" in name else Path(checked).parent
        if str(parent) != ".":
            (run.path / parent).mkdir(parents=True, exist_ok=True)
    return run.path / name


def callbacks_for(
    config,
    run: RunFolder,
    rows: list[dict],
    saved: dict | None = None,
    progress=None,
    every_epoch: bool = False,
    tracker=None,
) -> tuple[list, Recorder]:
    """The run's callbacks in order, and its Recorder (which the trainer asks for the rows);
    `every_epoch`: checkpoint each epoch rather than every few seconds; `tracker`: the run's
    MLflow run (`dlcli.tracking.Tracker`), which gets each new history row."""
    t = config.training
    es = (
        keras.callbacks.EarlyStopping(**t.early_stopping.model_dump()) if t.early_stopping else None
    )
    rlr = (
        keras.callbacks.ReduceLROnPlateau(**t.reduce_lr_on_plateau.model_dump())
        if t.reduce_lr_on_plateau
        else None
    )
    callbacks = [EpochSeed(config.seed), *(cb for cb in (es, rlr) if cb is not None)]
    for spec in t.callbacks:
        kwargs = spec.kwargs  # file names were checked to stay inside (dlcli.model.checks)
        for key in PATH_ARGUMENTS:
            if isinstance(kwargs.get(key), str):
                kwargs[key] = str(_inside(run, kwargs[key]))
        callbacks.append(keras_names.construct("callback", spec.type, kwargs))
    # Not keras.callbacks.TerminateOnNaN: it prints to stdout, which `--json` keeps clean.
    recorder = Recorder(run, rows, es, rlr, 0 if every_epoch else CHECKPOINT_INTERVAL_S)
    state = (saved or {}).get("early_stopping")
    if (
        es is not None
        and es.restore_best_weights
        and isinstance(state, dict)
        and isinstance(state.get("best_epoch"), int)
    ):
        recorder.best_epoch = state["best_epoch"] + 1  # a resume that trains no epoch keeps it
    callbacks.append(recorder)
    if saved:
        callbacks.append(Restorer(run, saved, es, rlr))
    if config.output.tensorboard:
        callbacks.append(EpochBoard(run.folder("tensorboard")))
    if tracker is not None:
        callbacks.append(EpochTrack(tracker, recorder))
    if progress is not None:
        progress.cut = recorder.cut
        callbacks.append(progress)
    return callbacks, recorder
