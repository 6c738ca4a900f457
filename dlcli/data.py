"""Data: load a config's source into train / validation / test arrays.

Sources are scikit-learn's bundled datasets (offline), `keras.datasets` (downloaded once,
cached by Keras), and CSV / NPZ files. Classification targets become class indices
0..K-1; `Dataset.labels` keeps the original label of each. Splits are seeded and, for
classification, stratified (scikit-learn's `train_test_split`). This module returns raw
features: normalisation is fitted on the training split by the model (`dlcli.model`), so
that it travels inside the saved model.

Every problem with the data is a `ConfigError` that names the file, the line where there
is one, and the fix: it is found before any training starts.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcli.config import KERAS_SOURCES, SKLEARN_SOURCES, Config
from dlcli.errors import ConfigError, Problem, did_you_mean

REGRESSION_SOURCES = {"diabetes"}
CLASSIFICATION_LOSS_WORDS = ("crossentropy", "hinge", "focal")


@dataclass
class Dataset:
    """Arrays per split, and what is known about them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    task: str = "classification"
    labels: list | None = None
    feature_names: list[str] | None = None
    target: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def one_hot(self) -> bool:
        return self.task == "classification" and self.y_train.ndim == 2 and self.y_train.shape[1] > 1

    @property
    def n_classes(self) -> int:
        return len(self.labels) if self.labels is not None else 0

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
        if x is None:
            raise ConfigError(f"the run has no '{name}' split (data.validation_split is 0)")
        return x, y

    def summary(self) -> dict:
        """What run.json records about the data."""
        counts = {s: len(getattr(self, f"x_{s}")) for s in ("train", "val", "test") if getattr(self, f"x_{s}") is not None}
        return {
            "task": self.task,
            "samples": counts,
            "classes": self.n_classes or None,
            "input_shape": list(self.input_shape),
            "features": self.feature_names,
            "target": self.target,
            "files": self.files,
            "fingerprint": self.fingerprint,
        }


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def infer_task(config: Config, y: np.ndarray | None = None) -> str:
    """classification or regression: as set, else from the loss, the source, the target."""
    if config.data.task != "auto":
        return config.data.task
    if config.compile.loss is not None:
        key = config.compile.loss.type.lower().replace("_", "")
        return "classification" if any(w in key for w in CLASSIFICATION_LOSS_WORDS) else "regression"
    if config.data.source in REGRESSION_SOURCES:
        return "regression"
    if config.data.source in SKLEARN_SOURCES + KERAS_SOURCES or y is None:
        return "classification"
    if y.dtype.kind in "OUSb" or (y.ndim == 2 and y.shape[1] > 1):
        return "classification"
    return "classification" if np.all(np.mod(y.astype(float), 1) == 0) else "regression"


def _where(config: Config, key: str) -> str:
    return config.where(("data", key))


def _load_sklearn(name: str):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    names = [str(n) for n in bunch.feature_names]
    labels = [_plain(v) for v in bunch.target_names] if "target_names" in bunch else None
    return bunch.data.astype("float32"), bunch.target, names, labels


def _load_keras(config: Config, name: str):
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # noqa: BLE001 - get_file raises plain Exception when offline
        cache = Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras") / "datasets"
        raise ConfigError(Problem(
            f"data.source '{name}' could not be downloaded and no usable copy is cached "
            f"in {cache} ({type(exc).__name__}); connect once to the network, or copy the "
            "dataset file into that folder (KERAS_HOME moves it)",
            where=_where(config, "source"),
        )) from None
    return (
        x_train.astype("float32"), np.asarray(y_train).reshape(len(y_train), -1).squeeze(-1),
        x_test.astype("float32"), np.asarray(y_test).reshape(len(y_test), -1).squeeze(-1),
    )


def _plain(value):
    """numpy scalars -> JSON-friendly Python values."""
    return value.item() if hasattr(value, "item") else value


def read_csv(path: str, target: str | None, features: list[str] | None, config_where: str = "") -> tuple:
    """Read a CSV of numeric features (and a target column, when named).

    Returns (x float32 array, y object array or None, feature names).
    """
    shown = path
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise ConfigError(Problem("data file not found; check data.path (relative paths start at the config's folder)", where=shown)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=shown)) from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ConfigError(Problem("the CSV has no data rows under its header; add rows", where=shown))
    header = [h.strip() for h in rows[0]]
    if target is not None and target not in header:
        raise ConfigError(Problem(
            f"no target column '{target}'{did_you_mean(target, header)}; columns are: {', '.join(header)}",
            where=config_where or shown,
        ))
    wanted = features if features is not None else [h for h in header if h != target]
    missing = [f for f in wanted if f not in header]
    if missing:
        raise ConfigError(Problem(
            f"no feature column '{missing[0]}'{did_you_mean(missing[0], header)}; columns are: {', '.join(header)}",
            where=config_where or shown,
        ))
    if not wanted:
        raise ConfigError(Problem("no feature columns: the CSV holds only the target", where=shown))
    index = {h: i for i, h in enumerate(header)}
    x = np.empty((len(rows) - 1, len(wanted)), dtype="float32")
    y = [] if target is not None else None
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(Problem(
                f"has {len(row)} fields, the header has {len(header)}; fix the row", where=f"{shown}:{line_no}"
            ))
        for j, name in enumerate(wanted):
            cell = row[index[name]].strip()
            if cell == "":
                raise ConfigError(Problem(
                    f"column '{name}' is empty; fill or drop missing values", where=f"{shown}:{line_no}"
                ))
            try:
                value = float(cell)
            except ValueError:
                raise ConfigError(Problem(
                    f"column '{name}' holds {cell!r}, not a number; features must be numeric "
                    "(encode it, or leave the column out of data.features)",
                    where=f"{shown}:{line_no}",
                )) from None
            if not math.isfinite(value):
                raise ConfigError(Problem(
                    f"column '{name}' is {cell or 'empty'}; fill or drop missing values", where=f"{shown}:{line_no}"
                ))
            x[line_no - 2, j] = value
        if y is not None:
            cell = row[index[target]].strip()
            if cell == "":
                raise ConfigError(Problem(f"the target '{target}' is empty; fill or drop the row", where=f"{shown}:{line_no}"))
            y.append(cell)
    return x, (None if y is None else _typed_targets(y)), wanted


def _typed_targets(cells: list[str]) -> np.ndarray:
    """Target strings -> ints, floats, or the strings themselves."""
    for kind in (int, float):
        try:
            return np.asarray([kind(c) for c in cells])
        except ValueError:
            continue
    return np.asarray(cells, dtype=object)


def read_npz(path: str, keys: list[str] | None, optional: tuple = (), where: str = "") -> dict:
    """Arrays from an NPZ file (never unpickled): `keys` (a missing one names those there)
    and the `optional` ones present, or every array when `keys` is None."""
    shown = path
    try:
        with np.load(path, allow_pickle=False) as archive:
            present = list(archive.files)
            if keys is None:
                return {k: archive[k] for k in present}
            missing = [k for k in keys if k not in present]
            if missing:
                raise ConfigError(Problem(
                    f"no array '{missing[0]}' in the NPZ{did_you_mean(missing[0], present)}; it holds: "
                    f"{', '.join(present) or 'nothing'} (set data.keys to name them)",
                    where=where or shown,
                ))
            return {k: archive[k] for k in [*keys, *optional] if k in present}
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(Problem("data file not found; check data.path (relative paths start at the config's folder)", where=shown)) from None
    except ValueError as exc:
        reason = "it holds Python objects, which dlcli never unpickles" if "pickle" in str(exc) else str(exc)
        raise ConfigError(Problem(f"not a usable NPZ file: {reason}", where=shown)) from None
    except Exception as exc:  # noqa: BLE001 - zip, OS and numpy errors alike
        raise ConfigError(Problem(f"not a readable NPZ file ({type(exc).__name__}: {exc})", where=shown)) from None


def _check_features(x: np.ndarray, shown: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise ConfigError(Problem(f"features are of type {x.dtype}, not numbers", where=shown))
    x = x.astype("float32")
    if x.ndim == 1:
        x = x[:, None]
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])
        raise ConfigError(Problem(f"features hold NaN or inf (first at sample {bad}); clean the data", where=shown))
    return x


def _encode(y_train, y_test, task: str, where: str):
    """Class targets -> indices 0..K-1 (and the labels), or regression targets -> float32."""
    if task == "regression":
        try:
            return y_train.astype("float32"), y_test.astype("float32"), None
        except (TypeError, ValueError):
            raise ConfigError(Problem(
                "the target holds text, so it cannot be regressed; use a classification loss "
                "(sparse_categorical_crossentropy) or set data.task: classification",
                where=where,
            )) from None
    if y_train.ndim == 2 and y_train.shape[1] > 1:  # already one-hot
        return y_train.astype("float32"), y_test.astype("float32"), list(range(y_train.shape[1]))
    if y_train.dtype.kind == "f" and not np.all(np.mod(y_train, 1) == 0):
        raise ConfigError(Problem(
            "the target holds fractional numbers, so it is not a set of classes; "
            "use a regression loss (mean_squared_error) or set data.task: regression",
            where=where,
        ))
    classes, y_index = np.unique(y_train.astype(str) if y_train.dtype == object else y_train, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(Problem(
            f"the target has a single class ({_plain(classes[0])!r}); classification needs at least two",
            where=where,
        ))
    lookup = {_plain(c): i for i, c in enumerate(classes)}
    test_values = y_test.astype(str) if y_test.dtype == object else y_test
    unseen = [_plain(v) for v in np.unique(test_values) if _plain(v) not in lookup]
    if unseen:
        raise ConfigError(Problem(f"the test data has labels never seen in training: {unseen[:5]}", where=where))
    y_test_index = np.asarray([lookup[_plain(v)] for v in test_values], dtype="int64")
    return y_index.astype("int64"), y_test_index, [_plain(c) for c in classes]


def _split(x, y, fraction: float, seed: int, stratify: bool):
    from sklearn.model_selection import train_test_split

    labels = (y.argmax(1) if y.ndim == 2 else y) if stratify else None
    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:
        # Too few samples of some class to stratify: split at random instead.
        return train_test_split(x, y, test_size=fraction, random_state=seed)


def load_data(config: Config) -> Dataset:
    """Load, check, encode and split the config's data.

    Example:
        >>> ds = load_data(load_config("configs/digits_mlp.yaml"))
        >>> ds.x_train.shape, ds.n_classes
        ((1149, 64), 10)
    """
    d = config.data
    files: dict[str, str] = {}
    feature_names = labels = x_test = y_test = None  # x_test stays None: no test set of its own
    if d.source in SKLEARN_SOURCES:
        x, y, feature_names, labels = _load_sklearn(d.source)
    elif d.source in KERAS_SOURCES:
        x, y, x_test, y_test = _load_keras(config, d.source)
    elif d.source == "csv":
        x, y, feature_names = read_csv(d.path, d.target, d.features, _where(config, "target"))
        files[d.path] = sha256_file(d.path)
        if d.test_path:
            x_test, y_test, _ = read_csv(d.test_path, d.target, feature_names, _where(config, "target"))
            files[d.test_path] = sha256_file(d.test_path)
    else:  # npz
        k = d.keys
        arrays = read_npz(d.path, [k.x_train, k.y_train], (k.x_test, k.y_test), _where(config, "path"))
        files[d.path] = sha256_file(d.path)
        x, y = _check_features(arrays[k.x_train], d.path), arrays[k.y_train]
        if len(x) != len(y):
            raise ConfigError(Problem(f"{k.x_train} has {len(x)} samples but {k.y_train} has {len(y)}", where=d.path))
        if (k.x_test in arrays) != (k.y_test in arrays):
            raise ConfigError(Problem(f"the NPZ has only one of {k.x_test} / {k.y_test}; add both or neither", where=d.path))
        if k.x_test in arrays:
            x_test, y_test = _check_features(arrays[k.x_test], d.path), arrays[k.y_test]
    if len(x) < 4:
        raise ConfigError(Problem(f"only {len(x)} samples; too few to split and train", where=_where(config, "source")))
    task = infer_task(config, y)
    if x_test is None:
        x, x_test, y, y_test = _split(x, y, d.test_split, config.seed, task == "classification")
    y, y_test, classes = _encode(np.asarray(y), np.asarray(y_test), task, _where(config, "target" if d.target else "source"))
    if task == "classification":
        labels = [labels[i] for i in classes] if labels is not None and all(isinstance(c, int) for c in classes) else classes
    x_val = y_val = None
    if d.validation_split > 0:
        x, x_val, y, y_val = _split(x, y, d.validation_split, config.seed, task == "classification")
    digest = hashlib.sha256()
    for array in (x, y, x_val, y_val, x_test, y_test):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return Dataset(
        x_train=x, y_train=y, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
        task=task, labels=labels if task == "classification" else None,
        feature_names=feature_names, target=d.target, files=files, fingerprint=digest.hexdigest(),
    )


def read_features_file(path: str, feature_names: list[str] | None, input_shape: tuple) -> np.ndarray:
    """Features for `predict` from a CSV (by column name, or by position without a header) or NPZ."""
    if path.endswith(".npz"):
        arrays = read_npz(path, None)
        key = next((k for k in ("x", "x_test", "x_train") if k in arrays), None)
        key = key or (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is None:
            raise ConfigError(Problem(f"name the features array 'x' (it holds: {', '.join(arrays) or 'nothing'})", where=path))
        x = _check_features(arrays[key], path)
    else:
        header = _csv_header(path)
        if feature_names and all(f in header for f in feature_names):
            x, _, _ = read_csv(path, None, feature_names)
        elif header and all(_is_number(h) for h in header):
            x = _check_features(np.loadtxt(path, delimiter=",", ndmin=2, dtype="float32"), path)
        else:
            missing = [f for f in (feature_names or []) if f not in header]
            raise ConfigError(Problem(
                f"the CSV lacks the model's feature column '{missing[0] if missing else '?'}'; "
                f"expected columns: {', '.join(feature_names or [])}",
                where=path,
            ))
    return _reshape(x, input_shape, path)


def read_labeled_file(path: str, config: Config, summary: dict, labels: list | None) -> tuple:
    """Features and encoded targets from a CSV/NPZ for `evaluate --data`."""
    target = summary.get("target") or "target"
    if path.endswith(".npz"):
        k = config.data.keys
        arrays = read_npz(path, None)
        pair = next(((a, b) for a, b in ((k.x_test, k.y_test), ("x", "y"), (k.x_train, k.y_train)) if a in arrays and b in arrays), None)
        if pair is None:
            raise ConfigError(Problem(f"expected arrays x_test and y_test (or x and y); it holds: {', '.join(arrays)}", where=path))
        x, y = _check_features(arrays[pair[0]], path), arrays[pair[1]]
    else:
        x, y, _ = read_csv(path, target, summary.get("features"))
    x = _reshape(x, tuple(summary["input_shape"]), path)
    if summary["task"] == "regression":
        return x, y.astype("float32")
    if y.ndim == 2:
        return x, y.astype("float32")
    index = {str(label): i for i, label in enumerate(labels)}
    unknown = [v for v in map(str, y) if v not in index]
    if unknown:
        raise ConfigError(Problem(f"label {unknown[0]!r} is not one of the run's classes: {labels}", where=path))
    return x, np.asarray([index[str(v)] for v in y], dtype="int64")


def _reshape(x: np.ndarray, input_shape: tuple, path: str) -> np.ndarray:
    if tuple(x.shape[1:]) == tuple(input_shape):
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(input_shape)):
        return x.reshape((len(x), *input_shape))
    raise ConfigError(Problem(
        f"features have shape {tuple(x.shape[1:])} per sample, the model takes {tuple(input_shape)}", where=path
    ))


def _csv_header(path: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [h.strip() for h in next(csv.reader(handle), [])]
    except FileNotFoundError:
        raise ConfigError(Problem("file not found", where=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(f"cannot read it: {exc}", where=path)) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
