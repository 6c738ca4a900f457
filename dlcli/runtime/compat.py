"""Every private or undocumented Keras, JAX and Optuna API dlcli touches, in one place.

Each function here leans on something its library does not promise to keep: a module under
`keras.src`, an attribute a class sets for itself, a private id. An upgrade that moves one
breaks it here, loudly, and `tests/test_compat.py` has a test per function that fails
naming it, instead of a feature going quietly wrong somewhere else. Code elsewhere in dlcli
calls these functions, never the private names.

Nothing is imported at module level: each function imports what it touches.
"""

from __future__ import annotations

import sys
from pathlib import Path


def keras_home() -> Path:
    """Where Keras keeps its own files (`$KERAS_HOME`, else `~/.keras`): Keras's own answer.

    Private: `keras.src.backend.config.keras_home`."""
    try:
        from keras.src.backend.config import keras_home as home
    except ImportError:  # Keras is not installed, or moved it: Keras's documented default
        import os

        return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return Path(home())


def keep_tensorflow_out() -> None:
    """On the JAX and torch backends, Keras asks `tf.available` (which imports TensorFlow,
    about 3 s, wherever it is installed) to seed it, to serialize a model, to recognise tf.data
    inputs: none of which such a run uses. Tell Keras's lazy module that TensorFlow is
    absent unless something has loaded it (a feature that needs TensorFlow imports it itself).

    Private: `keras.src.utils.module_utils.tensorflow._available`."""
    from keras.src.utils import module_utils

    lazy = getattr(module_utils, "tensorflow", None)
    if "tensorflow" not in sys.modules and hasattr(lazy, "_available"):
        lazy._available = False


def allow_uneven_batches() -> None:
    """Let Keras's DataParallel (JAX) take a batch its devices cannot split evenly.

    Keras shards every batch over the devices and refuses a batch whose size the device
    count does not divide (the last batch of an odd split: `IndivisibleError`; Keras does not
    pad: keras-team/keras#20082, #21167). Such a batch is instead given to every device
    whole: each computes the same step, which is the single-device step, so nothing is
    dropped or padded and the numbers match a run on one device. Only within one process;
    a multi-process run keeps Keras's own rule.

    Private: `keras.src.backend.jax.distribution_lib.distribute_data_input`, replaced."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    from keras.src.backend.jax import distribution_lib

    original = distribution_lib.distribute_data_input
    if getattr(original, "dlcli_uneven", False):
        return

    def distribute_data_input(per_process_batch, layout, batch_dim_name):
        sharding = getattr(layout, "backend_layout", layout)
        parts = getattr(sharding, "mesh", None) and sharding.mesh.shape.get(batch_dim_name)
        if parts and jax.process_count() == 1 and per_process_batch.shape[0] % parts:
            return jax.device_put(per_process_batch, NamedSharding(sharding.mesh, PartitionSpec()))
        return original(per_process_batch, layout, batch_dim_name)

    distribute_data_input.dlcli_uneven = True
    distribution_lib.distribute_data_input = distribute_data_input


def snake_case(name: str) -> str:
    """A Keras class name as Keras spells it in snake case (`SparseCategoricalCrossentropy` ->
    `sparse_categorical_crossentropy`), by Keras's own rule.

    Private: `keras.src.utils.naming.to_snake_case`."""
    from keras.src.utils.naming import to_snake_case

    return to_snake_case(name)


def inner_layers(model) -> list:
    """Every layer inside `model`, nested ones included (not the model itself).

    Private: `Layer._flatten_layers`."""
    return list(model._flatten_layers(include_self=False))


def seed_states(model) -> list:
    """The layers' random-number state variables (Dropout's seed generators), which Keras
    does not save with the weights.

    Undocumented: Keras names these variables `.../seed_generator_state`."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def stop_inference(model) -> None:
    """Ask `model.evaluate` / `model.predict` under way to stop after the batch in progress.

    Undocumented: the `stop_evaluating` / `stop_predicting` flags Keras's trainer reads between
    batches (`stop_training` is the documented one, for fit)."""
    model.stop_evaluating = model.stop_predicting = True


def early_stopping_state(callback) -> dict:
    """What an EarlyStopping callback has learned so far (for a checkpoint).

    Undocumented: its `wait`, `best`, `best_epoch`, `stopped_epoch` attributes."""
    return {
        "wait": callback.wait,
        "best": callback.best,
        "best_epoch": callback.best_epoch,
        "stopped_epoch": callback.stopped_epoch,
    }


def restore_early_stopping(callback, state: dict, best_weights=None) -> None:
    """Put an EarlyStopping callback back where `early_stopping_state` found it (and its best
    weights, when it restores them).

    Undocumented: its `wait`, `best`, `best_epoch`, `stopped_epoch`, `best_weights` attributes."""
    callback.wait, callback.best, callback.best_epoch, callback.stopped_epoch = (
        state["wait"],
        state["best"],
        state["best_epoch"],
        0,
    )
    if best_weights is not None:
        callback.best_weights = best_weights


def best_weights(callback):
    """The weights an EarlyStopping callback keeps as its best (None before the first epoch).

    Undocumented: its `best_weights` attribute."""
    return callback.best_weights


def reduce_lr_state(callback) -> dict:
    """What a ReduceLROnPlateau callback has learned so far (for a checkpoint).

    Undocumented: its `wait`, `best`, `cooldown_counter` attributes."""
    return {
        "wait": callback.wait,
        "best": callback.best,
        "cooldown_counter": callback.cooldown_counter,
    }


def restore_reduce_lr(callback, state: dict) -> None:
    """Put a ReduceLROnPlateau callback back where `reduce_lr_state` found it.

    Undocumented: its `wait`, `best`, `cooldown_counter` attributes."""
    callback.wait, callback.best, callback.cooldown_counter = (
        state["wait"],
        state["best"],
        state["cooldown_counter"],
    )


def study_trial(study, frozen):
    """A live `optuna.Trial` for a trial of `study` that is still running (one asked for by a
    process that stopped, to be told its end).

    Private: `FrozenTrial._trial_id`, and building `optuna.trial.Trial` by hand."""
    from optuna.trial import Trial

    return Trial(study, frozen._trial_id)


def initialize_jax_distributed(initialize, *, timeout_s: int, heartbeat_s: int):
    """`keras.distribution.initialize` with JAX's timeouts, which it does not pass on: JAX's
    own wait 5 minutes for a peer that never comes and 100 s for one that died. Returns
    `initialize(...)`'s result, `jax.distributed.initialize` put back after.

    Relies on: `keras.distribution.initialize` calling `jax.distributed.initialize`, whose
    `initialization_timeout` and `heartbeat_timeout_seconds` arguments it leaves out."""
    import functools

    import jax

    original = jax.distributed.initialize
    jax.distributed.initialize = functools.partial(
        original, initialization_timeout=timeout_s, heartbeat_timeout_seconds=heartbeat_s
    )
    try:
        return initialize()
    finally:
        jax.distributed.initialize = original


__all__ = [
    "allow_uneven_batches",
    "best_weights",
    "early_stopping_state",
    "initialize_jax_distributed",
    "inner_layers",
    "keep_tensorflow_out",
    "keras_home",
    "reduce_lr_state",
    "restore_early_stopping",
    "restore_reduce_lr",
    "seed_states",
    "snake_case",
    "stop_inference",
    "study_trial",
]
