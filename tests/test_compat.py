"""Every private or undocumented third-party API dlcli touches (`dlcli.runtime.compat`), one
test each: an upgrade of Keras, JAX or Optuna that moves one fails here, naming it, rather
than a feature going quietly wrong elsewhere.

The tests run in-process on the JAX backend (this session's Keras), on tiny real models.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dlcli.runtime import compat
from dlcli.runtime.keras_import import import_keras


@pytest.fixture(scope="module")
def keras():
    return import_keras("jax")


def tiny(keras, dropout: bool = False):
    layers = [keras.Input((4,)), keras.layers.Dense(3, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(0.5, seed=1))
    model = keras.Sequential([*layers, keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_keras_home_is_where_keras_keeps_its_files(keras):
    from keras.src.backend import config

    assert compat.keras_home() == Path(config.keras_home())
    assert compat.keras_home().is_absolute()


def test_keras_is_told_tensorflow_is_absent_on_other_backends(keras):
    from keras.src.utils import module_utils

    assert hasattr(module_utils.tensorflow, "_available"), "Keras's lazy tensorflow module changed"
    compat.keep_tensorflow_out()
    if "tensorflow" not in sys.modules:
        assert module_utils.tensorflow.available is False


def test_uneven_batches_patch_replaces_keras_data_distribution(keras):
    from keras.src.backend.jax import distribution_lib

    assert callable(distribution_lib.distribute_data_input), "Keras moved distribute_data_input"
    compat.allow_uneven_batches()
    assert getattr(distribution_lib.distribute_data_input, "dlcli_uneven", False)
    compat.allow_uneven_batches()  # twice: wrapped once


def test_snake_case_is_keras_spelling(keras):
    assert compat.snake_case("SparseCategoricalCrossentropy") == "sparse_categorical_crossentropy"
    assert compat.snake_case("MeanSquaredError") == "mean_squared_error"


def test_inner_layers_lists_the_model_layers(keras):
    model = tiny(keras, dropout=True)
    kinds = [type(layer).__name__ for layer in compat.inner_layers(model)]
    assert kinds.count("Dense") == 2 and "Dropout" in kinds


def test_seed_states_are_the_dropout_generators(keras):
    states = compat.seed_states(tiny(keras, dropout=True))
    assert len(states) == 1, "Keras renamed its seed generator state variables"
    assert compat.seed_states(tiny(keras)) == []


def test_stop_inference_stops_evaluate_after_the_batch(keras):
    model = tiny(keras)
    x, y = np.zeros((64, 4), "float32"), np.zeros(64, "int64")
    seen = []

    class Stop(keras.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            seen.append(batch)
            compat.stop_inference(self.model)

    model.evaluate(x, y, batch_size=8, callbacks=[Stop()], verbose=0)
    assert seen == [0], "Keras no longer reads stop_evaluating between batches"


def test_early_stopping_and_reduce_lr_state_round_trip(keras):
    es = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    rlr = keras.callbacks.ReduceLROnPlateau(patience=2)
    for callback in (es, rlr):
        callback.set_model(tiny(keras))
        callback.on_train_begin()
    es.wait, es.best, es.best_epoch = 2, 0.5, 4
    rlr.wait, rlr.best, rlr.cooldown_counter = 1, 0.25, 3
    saved, saved_lr = compat.early_stopping_state(es), compat.reduce_lr_state(rlr)
    assert saved == {"wait": 2, "best": 0.5, "best_epoch": 4, "stopped_epoch": 0}
    assert saved_lr == {"wait": 1, "best": 0.25, "cooldown_counter": 3}
    for callback in (es, rlr):
        callback.on_train_begin()  # Keras resets them
    weights = es.model.get_weights()
    compat.restore_early_stopping(es, saved, weights)
    compat.restore_reduce_lr(rlr, saved_lr)
    assert (es.wait, es.best, es.best_epoch) == (2, 0.5, 4) and compat.best_weights(es) is weights
    assert (rlr.wait, rlr.best, rlr.cooldown_counter) == (1, 0.25, 3)


def test_a_running_trial_can_be_told_its_end(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    asked = study.ask()
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == asked.number)
    study.tell(compat.study_trial(study, frozen), 1.5)
    assert study.get_trials()[0].value == 1.5


def test_jax_distributed_initialize_gets_the_timeouts_and_is_put_back(monkeypatch):
    import inspect

    import jax

    parameters = inspect.signature(jax.distributed.initialize).parameters
    assert {"initialization_timeout", "heartbeat_timeout_seconds"} <= set(parameters), (
        "jax.distributed.initialize lost its timeout arguments"
    )
    original = jax.distributed.initialize
    seen = {}
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: seen.update(kw))
    patched = jax.distributed.initialize
    compat.initialize_jax_distributed(
        lambda: jax.distributed.initialize(), timeout_s=7, heartbeat_s=9
    )
    assert seen == {"initialization_timeout": 7, "heartbeat_timeout_seconds": 9}
    assert jax.distributed.initialize is patched
    monkeypatch.setattr(jax.distributed, "initialize", original)
