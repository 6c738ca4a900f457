"""Baselines: what the run's test split scores without deep learning, beside the model.

`output.baselines` picks them (`auto` by default):

- `majority` (auto and majority): classification predicts the training split's class
  frequencies as probabilities for every sample, so its class is the most frequent one of
  the training split; regression predicts the training split's mean. It needs the targets
  alone, so a streamed run (`data.streaming`) gets it too.
- `gradient_boosting` (auto only): scikit-learn's `HistGradientBoostingClassifier` /
  `HistGradientBoostingRegressor` with their default settings (`random_state` the run's
  seed), fitted on the training split (not the validation rows) of a table held in memory
  (a CSV or Parquet file, or scikit-learn's iris, wine, breast_cancer and diabetes; not
  digits' pixels, images or NPZ arrays) with at most `MAX_BOOSTED_ROWS` training rows and one regression target. A
  table's numeric columns go in as the numbers read (missing ones as NaN, which the model
  handles itself), its categorical columns as integer codes marked `categorical_features`.

Each is scored on the test split with the run's own loss and metrics: fresh Keras objects
of the resolved config's `compile.loss` and `compile.metrics`, evaluated on the baseline's
outputs in the form the model's outputs take (class probabilities, one sigmoid unit for a
binary loss, logits for `from_logits`), so the names and the computation are those of
metrics.json's `test`. The result, per baseline, is those metrics and `fit_s` (seconds to
fit it); a baseline that cannot be fitted or scored holds `error` instead, and the run goes
on. The fitting runs on a worker thread (`start`) while the model trains, on one core; the
scoring, in Keras, on the thread that asks for it (`Pending.scores`). Nothing here writes.

Example:
    >>> pending = start(prepared)            # fitting while the model trains
    >>> baselines, seconds = pending.scores()
    >>> baselines["majority"]["accuracy"], baselines["gradient_boosting"]["fit_s"]
"""

from __future__ import annotations

import threading
import time

import numpy as np

from dlcli.errors import first_line
from dlcli.model.outputs import targets_for
from dlcli.runtime import keras_names

# The sources that are tables, where gradient boosting is the alternative a user would try
# (not digits' pixels, the Keras image datasets or NPZ arrays).
TABLES = ("csv", "parquet", "iris", "wine", "breast_cancer", "diabetes")
MAX_BOOSTED_ROWS = 1_000_000  # gradient boosting fits on training splits up to this size
# Up to this many training rows gradient boosting fits on one thread: there, OpenMP's
# threads spend more on meeting each other than they save, and on a machine whose cores are
# busy with other work, each of the thousands of meetings waits for a descheduled thread
# (a census-sized fit on 2 busy cores: 14 s on 2 threads, 1.7 s on one).
ONE_THREAD_ROWS = 100_000
MIN_PROBABILITY = 1e-7  # probabilities clipped to [this, 1 - this] before becoming logits
BATCH = 65_536  # test samples per scoring batch


def names(config, data) -> list[str]:
    """The baselines `output.baselines` asks for that this data allows."""
    mode = config.output.baselines
    if mode == "none":
        return []
    boosted = mode == "auto" and config.data.source in TABLES and boostable(data)
    return ["majority", *(["gradient_boosting"] if boosted else [])]


def boostable(data) -> bool:
    """Whether gradient boosting runs on this data: in memory, a row of features per sample,
    at most `MAX_BOOSTED_ROWS` training rows, one regression target."""
    x = getattr(data.train, "x", None)
    return (
        not data.streaming
        and x is not None
        and x.ndim == 2
        and len(data.train) <= MAX_BOOSTED_ROWS
        and (data.task == "classification" or data.target_width == 1)
    )


def start(prepared) -> Pending:
    """Fit the baselines the config asks for on a worker thread (scikit-learn and numpy
    only: the model trains meanwhile); `Pending.scores` scores them."""
    return Pending(prepared)


class Pending:
    """Baselines being fitted on a worker thread."""

    def __init__(self, prepared):
        self.prepared, self.fitted, self.seconds = prepared, {}, 0.0
        self.names = names(prepared.config, prepared.data)
        self.thread = threading.Thread(target=self._fit, daemon=True)
        if self.names:
            self.thread.start()

    def _fit(self) -> None:
        started = time.perf_counter()
        data, seed = self.prepared.data, self.prepared.config.seed
        for name in self.names:
            fit = _majority if name == "majority" else _gradient_boosting
            try:
                self.fitted[name] = fit(data, seed)
            except Exception as exc:  # noqa: BLE001 - a baseline that cannot fit never fails the run
                self.fitted[name] = exc
        self.seconds = time.perf_counter() - started

    def scores(self) -> tuple[dict[str, dict], float]:
        """Each baseline scored on the test split, once fitted: ({name: {metric: value, ...,
        "fit_s": s}}, the seconds the baselines took: fitting, predicting and scoring)."""
        if not self.names:
            return {}, 0.0
        self.thread.join()
        started, found = time.perf_counter(), {}
        scorer = Scorer(self.prepared)
        for name in self.names:
            fitted = self.fitted.get(name, RuntimeError("not fitted"))
            if isinstance(fitted, Exception):
                found[name] = {"error": _error(fitted)}
                continue
            outputs, fit_s = fitted
            try:
                found[name] = {**scorer.score(outputs), "fit_s": round(fit_s, 3)}
            except Exception as exc:  # noqa: BLE001 - nor one its metrics cannot score
                found[name] = {"error": _error(exc)}
        return found, round(self.seconds + time.perf_counter() - started, 3)


def compute(prepared) -> tuple[dict[str, dict], float]:
    """`start(prepared).scores()`: the baselines fitted and scored, then returned."""
    return start(prepared).scores()


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


# ---------------------------------------------------------------- fitting


def _majority(data, seed: int) -> tuple[np.ndarray, float]:
    """The training split's class frequencies (or mean), for every test sample."""
    started = time.perf_counter()
    y = np.asarray(data.train.y)
    if data.task == "classification":
        guess = _frequencies(y, data.n_classes)
    else:
        guess = y.reshape(len(y), -1).astype("float64").mean(axis=0)
    fit_s = time.perf_counter() - started
    return np.tile(guess, (len(data.test), 1)), fit_s


def _frequencies(y: np.ndarray, classes: int) -> np.ndarray:
    """Class frequencies of class indices, or of one-hot rows."""
    if y.ndim == 2:
        return y.astype("float64").sum(axis=0) / max(len(y), 1)
    return np.bincount(y.astype("int64"), minlength=classes) / max(len(y), 1)


def _gradient_boosting(data, seed: int) -> tuple[np.ndarray, float]:
    """HistGradientBoosting fitted on the training split: its test outputs (class
    probabilities or values) and the seconds the fit took."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    categorical = categorical_columns(data)
    x_train, x_test = (features(split.x, categorical) for split in (data.train, data.test))
    classify = data.task == "classification"
    y = np.asarray(data.train.y)
    y = (y.argmax(axis=1) if y.ndim == 2 else y) if classify else y.reshape(-1)
    model = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
        categorical_features=categorical or None, random_state=seed
    )
    threads = 1 if len(y) <= ONE_THREAD_ROWS else None
    with threadpool_limits(limits=threads, user_api="openmp"):
        started = time.perf_counter()
        model.fit(x_train, y)
        fit_s = time.perf_counter() - started
        if not classify:
            return model.predict(x_test).reshape(-1, 1), fit_s
        probabilities = np.zeros((len(x_test), data.n_classes))
        probabilities[:, model.classes_.astype("int64")] = model.predict_proba(x_test)
    return probabilities, fit_s


def categorical_columns(data) -> list[int]:
    """The positions of a table's categorical columns (none for other data)."""
    prep = data.preprocessing
    return (
        [] if prep is None else [j for j, f in enumerate(prep.features) if f.type == "categorical"]
    )


def features(x: np.ndarray, categorical: list[int]) -> np.ndarray:
    """Features as gradient boosting takes them: numbers as they are; a categorical column's
    vocabulary index i (most frequent first, 0 missing or unseen) as code i - 1, missing as
    NaN, the 255th most frequent category and every rarer one sharing the last code, 254
    (the model takes at most 255 categories a column)."""
    if not categorical:
        return x
    x = np.array(x, dtype="float64")
    for j in categorical:
        index = x[:, j]
        x[:, j] = np.where(index < 1, np.nan, np.minimum(index, 255) - 1)
    return x


# ---------------------------------------------------------------- scoring


class Scorer:
    """The run's loss and metrics, as `model.evaluate` reports the model's, of outputs given
    for the test split: one Keras model that passes its input through (float32 whatever the
    run's precision), compiled once with the model's loss object and loss weight and fresh
    metrics of the config; on JAX its test step is compiled (one small program, which the
    compilation cache keeps) rather than run op by op, each op compiled apart."""

    def __init__(self, prepared):
        keras, self.prepared = prepared.keras, prepared
        self.model = None
        self.jax = keras.backend.backend() == "jax"

    def score(self, outputs: np.ndarray) -> dict[str, float]:
        """`outputs`: class probabilities or values, one row per test sample."""
        prepared = self.prepared
        keras, model, data = prepared.keras, prepared.model, prepared.data
        outputs = as_model_outputs(model, outputs, data.task)
        if self.model is None:
            self.model = keras.Sequential([keras.Input(shape=(outputs.shape[1],))])
            self.model.add(keras.layers.Identity(dtype="float32"))
            self.model.compile(
                loss=model.loss,
                loss_weights=(model.get_compile_config() or {}).get("loss_weights"),
                metrics=[keras_names.make_metric(spec) for spec in prepared.config.compile.metrics],
                run_eagerly=not self.jax,
                jit_compile=self.jax,
            )
        y = targets_for(model, np.asarray(data.test.y), data.n_classes)
        scored = self.model.evaluate(
            outputs, y, batch_size=min(len(outputs), BATCH), verbose=0, return_dict=True
        )
        return {name: float(value) for name, value in scored.items()}


def as_model_outputs(model, outputs: np.ndarray, task: str) -> np.ndarray:
    """Class probabilities -> the model's own output form: the probability of class 1 for a
    single sigmoid unit, logits where the loss takes logits (`from_logits`); float32."""
    if task != "classification":
        return outputs.astype("float32")
    units = model.output_shape[-1]
    if units == 1:
        outputs = outputs[:, -1:]
    if getattr(model.loss, "from_logits", False):
        p = np.clip(outputs, MIN_PROBABILITY, 1 - MIN_PROBABILITY)
        outputs = np.log(p / (1 - p)) if units == 1 else np.log(p)
    return outputs.astype("float32")


__all__ = ["MAX_BOOSTED_ROWS", "Pending", "Scorer", "boostable", "compute", "names", "start"]
