"""Data: a config's source turned into seeded train / validation / test splits.

`load_data` asks the config's source (`dlcli.sources`) for what it holds, then decides the
task, encodes class targets as indices 0..K-1 (`Dataset.labels` keeps the original label
of each), splits with scikit-learn's `train_test_split` (seeded, stratified for classes) and
fingerprints the result. Nothing here knows the model: normalisation is fitted on the
training split by `dlcli.preprocessing`, so that it travels inside the saved model.

Training reaches samples only through `Split`: its length, its batches, its per-process
shard and the arguments `model.fit` / `evaluate` take. Splits hold arrays in memory today;
a split read from disk batch by batch will keep the same methods.

Every problem with the data is a `ConfigError` that names the file, the line where there is
one, and the fix: it is found before any training starts. That includes a split fraction
that would leave a split empty, or training with fewer than `MIN_TRAIN` samples (at the
config's line for that key).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dlcli.config import Config
from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.losses import task_of
from dlcli.sources import source_for
from dlcli.sources.base import checked_targets, numeric_features, plain
from dlcli.sources.npzfile import read_features as read_npz_features
from dlcli.sources.npzfile import read_labeled as read_npz_labeled
from dlcli.sources.tablefile import inspect, read_table
from dlcli.tables import TablePreprocessing, fit

BATCH_ROWS = 4096  # rows per batch where dlcli itself walks a split (statistics, predictions)
MIN_TRAIN = 2  # samples the training split keeps at least (validation and test keep one)


@dataclass
class Split:
    """One split's samples: features `x` and targets `y`, in memory.

    Example:
        >>> split = Split(np.zeros((10, 3)), np.arange(10))
        >>> len(split), split.steps(4), len(split.shard(1, 2)), len(split.shard(1, 3, 2))
        (10, 3, 5, 2)
    """

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def steps(self, batch_size: int) -> int:
        """Batches per pass (the last one may be partial)."""
        return math.ceil(len(self) / batch_size)

    def feature_batches(self, rows: int = BATCH_ROWS) -> Iterator[np.ndarray]:
        """The features, `rows` samples at a time, in order."""
        for start in range(0, len(self), rows):
            yield self.x[start:start + rows]

    def shard(self, index: int, count: int, multiple: int = 1) -> Split:
        """Process `index` of `count`'s share: every `count`-th sample from `index`, cut so
        that every process holds the same number of samples, a multiple of `multiple` (its
        devices): JAX assembles each global batch from equal per-process parts. At most
        `count * multiple - 1` samples of the split are left out."""
        size = (len(self) // count) // multiple * multiple
        return Split(self.x[index::count][:size], self.y[index::count][:size])

    def keras_inputs(self, labels: Callable[[np.ndarray], np.ndarray], batch_size: int) -> dict:
        """The arguments `model.fit` / `model.evaluate` take for this split; `labels` turns
        the targets into the form the loss wants."""
        return {"x": self.x, "y": labels(self.y), "batch_size": batch_size}

    def validation_data(self, labels: Callable[[np.ndarray], np.ndarray]):
        """What `model.fit(validation_data=...)` takes for this split."""
        return self.x, labels(self.y)


@dataclass
class Dataset:
    """A config's data: the splits, and what is known about them."""

    train: Split
    test: Split
    val: Split | None = None
    task: str = "classification"
    labels: list | None = None
    feature_names: list[str] | None = None
    target: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    preprocessing: TablePreprocessing | None = None  # a table's: fitted on the training split

    @property
    def one_hot(self) -> bool:
        y = self.train.y
        return self.task == "classification" and y.ndim == 2 and y.shape[1] > 1

    @property
    def n_classes(self) -> int:
        return len(self.labels) if self.labels is not None else 0

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.x.shape[1:])

    @property
    def target_width(self) -> int:
        """Numbers per sample in a regression target."""
        y = self.train.y
        return 1 if y.ndim == 1 else int(y.shape[1])

    def split(self, name: str) -> Split:
        found = {"train": self.train, "val": self.val, "test": self.test}[name]
        if found is None:
            raise ConfigError(f"the run has no '{name}' split (data.validation_split is 0)")
        return found

    def summary(self) -> dict:
        """What run.json records about the data."""
        splits = {"train": self.train, "val": self.val, "test": self.test}
        return {
            "task": self.task,
            "samples": {name: len(s) for name, s in splits.items() if s is not None},
            "classes": self.n_classes or None,
            "input_shape": list(self.input_shape),
            "features": self.feature_names,
            "target": self.target,
            "files": self.files,
            "fingerprint": self.fingerprint,
            **({"rows": self.preprocessing.rows} if self.preprocessing is not None else {}),
        }


def infer_task(config: Config, y: np.ndarray | None = None, source_task: str | None = None) -> str:
    """classification or regression: as set, else from the loss, the source, the target."""
    if config.data.task != "auto":
        return config.data.task
    if config.compile.loss is not None:
        from_loss = task_of(config.compile.loss)
        if from_loss is not None:
            return from_loss
    if source_task is not None or y is None:
        return source_task or "classification"
    if y.dtype.kind in "OUSb" or (y.ndim == 2 and y.shape[1] > 1):
        return "classification"
    return "classification" if np.all(np.mod(y.astype(float), 1) == 0) else "regression"


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
            f"the target has a single class ({plain(classes[0])!r}); classification needs at least two",
            where=where,
        ))
    lookup = {plain(c): i for i, c in enumerate(classes)}
    test_values = y_test.astype(str) if y_test.dtype == object else y_test
    unseen = [plain(v) for v in np.unique(test_values) if plain(v) not in lookup]
    if unseen:
        raise ConfigError(Problem(unseen_labels(unseen, list(lookup)), where=where))
    y_test_index = np.asarray([lookup[plain(v)] for v in test_values], dtype="int64")
    return y_index.astype("int64"), y_test_index, [plain(c) for c in classes]


def unseen_labels(unseen: list, labels: list) -> str:
    """The sentence for target labels the model never learned, each with a did-you-mean."""
    shown = "; ".join(f"{v!r}{did_you_mean(str(v), [str(label) for label in labels])}" for v in unseen[:5])
    more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
    return (f"the target holds labels never seen in training: {shown}{more}; "
            f"the classes are: {', '.join(map(str, labels[:20]))}")


def _split(x, y, fraction: float, seed: int, stratify: bool, where: str):
    from sklearn.model_selection import train_test_split

    labels = (y.argmax(1) if y.ndim == 2 else y) if stratify else None
    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:
        pass  # too few samples of some class to stratify: split at random instead
    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed)
    except ValueError as exc:
        raise ConfigError(Problem(f"cannot split the data: {exc}", where=where)) from None


def _check_fraction(config: Config, key: str, samples: int, keep: int) -> None:
    """`data.<key>` must leave `keep` samples of `samples` and take at least one (as
    scikit-learn counts: the split takes ceil(fraction * samples)); a ConfigError at the
    key's line saying what each side would get and what to set otherwise."""
    fraction = getattr(config.data, key)
    taken = math.ceil(fraction * samples)
    if taken >= 1 and samples - taken >= keep:
        return
    part, rest = {"test_split": ("test", "training and validation"), "validation_split": ("validation", "training")}[key]
    most = math.floor(100 * (samples - keep) / samples) / 100
    while most > 0 and samples - math.ceil(most * samples) < keep:
        most = round(most - 0.01, 2)
    fix = f"set data.{key} to at most {most:g}" if most > 0 else "use a larger data file"
    raise ConfigError(config.problem(("data", key), (
        f"{fraction:g} of {samples} samples gives {taken} for {part} and leaves {samples - taken} for {rest}, "
        f"which needs at least {keep}; {fix}"
    )))


def _fingerprint(*splits: Split | None) -> str:
    digest = hashlib.sha256()
    for split in splits:
        if split is not None:
            for array in (split.x, split.y):
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load_data(config: Config) -> Dataset:
    """Load, check, encode and split the config's data.

    Example:
        >>> ds = load_data(load_config("configs/digits_mlp.yaml"))
        >>> len(ds.train), ds.n_classes
        (1149, 10)
    """
    d = config.data
    loaded = source_for(d.source).load(config)
    x, y, x_test, y_test = loaded.x, np.asarray(loaded.y), loaded.x_test, loaded.y_test
    if len(x) < 4:
        raise ConfigError(Problem(f"only {len(x)} samples; too few to split and train", where=config.where(("data", "source"))))
    task = infer_task(config, y, loaded.task)
    if x_test is None:
        _check_fraction(config, "test_split", len(x), MIN_TRAIN + (d.validation_split > 0))
        x, x_test, y, y_test = _split(x, y, d.test_split, config.seed, task == "classification",
                                      config.where(("data", "test_split")))
    where = config.where(("data", "target" if d.target else "source"))
    y, y_test, classes = _encode(y, np.asarray(y_test), task, where)
    labels = None
    if task == "classification":
        known = loaded.labels
        labels = [known[i] for i in classes] if known is not None and all(isinstance(c, int) for c in classes) else classes
    val = None
    if d.validation_split > 0:
        _check_fraction(config, "validation_split", len(x), MIN_TRAIN)
        x, x_val, y, y_val = _split(x, y, d.validation_split, config.seed, task == "classification",
                                    config.where(("data", "validation_split")))
        val = Split(x_val, y_val)
    train, test = Split(x, y), Split(x_test, y_test)
    preprocessing = None
    if loaded.table is not None:  # categories and statistics of the training rows only
        table = loaded.table
        preprocessing = fit(table, train.x, d.normalize)
        for split in (train, val):
            if split is not None:
                preprocessing.encode(split.x, table.categories)
        preprocessing.unseen = preprocessing.encode(test.x, table.test_categories or table.categories)
    return Dataset(
        train=train, val=val, test=test, task=task, labels=labels,
        feature_names=loaded.feature_names, target=loaded.table.target if loaded.table else d.target,
        files=loaded.files, fingerprint=_fingerprint(train, val, test), preprocessing=preprocessing,
    )


def read_features_file(path: str, summary: dict, preprocessing: TablePreprocessing | None) -> tuple:
    """Features for `predict` as (model input, unseen categories): a raw table in the
    training file's form for a table run; else an NPZ (array `x`) or a CSV of numbers (the
    model's columns by name, or every column of a file without a header, by position)."""
    if preprocessing is not None:
        if path.endswith(".npz"):
            raise ConfigError(Problem(
                f"this run was trained on a {preprocessing.format.kind} table; give raw rows in that form "
                "(an NPZ holds arrays, not the table's columns)", where=path))
        x, _, unseen = preprocessing.read(path, target=False)
        return x, unseen
    input_shape = tuple(summary["input_shape"])
    if path.endswith(".npz"):
        return _reshape(read_npz_features(path), input_shape, path), {}
    x, _ = _numbers_file(path, summary.get("features"), None, int(np.prod(input_shape)))
    return _reshape(x, input_shape, path), {}


def read_labeled_file(path: str, config: Config, summary: dict, labels: list | None,
                      preprocessing: TablePreprocessing | None) -> tuple[Split, dict]:
    """Features and encoded targets for `evaluate --data`, and the unseen categories."""
    unseen = {}
    if preprocessing is not None:
        x, y, unseen = preprocessing.read(path, target=True)
    elif path.endswith(".npz"):
        x, y = read_npz_labeled(path, config.data.keys)
    else:
        x, y = _numbers_file(path, summary.get("features"), summary.get("target") or "target",
                             int(np.prod(summary["input_shape"])))
        y = checked_targets(y, path)
    x = _reshape(x, tuple(summary["input_shape"]), path)
    if summary["task"] == "regression" or y.ndim == 2:
        try:
            return Split(x, y.astype("float32")), unseen
        except (TypeError, ValueError):
            raise ConfigError(Problem("the target holds text; this run's model predicts numbers", where=path)) from None
    index = {str(label): i for i, label in enumerate(labels)}
    values = np.asarray(y).astype(str)
    unknown = [v for v in dict.fromkeys(values.tolist()) if v not in index]
    if unknown:
        raise ConfigError(Problem(unseen_labels(unknown, labels), where=path))
    return Split(x, np.asarray([index[v] for v in values], dtype="int64")), unseen


def _numbers_file(path: str, feature_names: list[str] | None, target: str | None, width: int) -> tuple:
    """A CSV of numbers for a model trained on arrays: its feature columns by name (with the
    target when `target` is named), or, in a file without a header, every column by position."""
    fmt = inspect(path, missing=())
    names = list(feature_names or [])
    if not (names and all(n in fmt.names for n in names)):
        if fmt.header or len(fmt.names) != width + (target is not None):
            expected = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            raise ConfigError(Problem(
                f"the CSV lacks the model's feature columns ({expected or f'{width} numbers per row'}); give them "
                f"by name in a header, or {width} columns{' then the target' if target else ''} without one",
                where=path))
        names = fmt.names[:width]
        target = fmt.names[width] if target is not None else None
    elif target is not None and target not in fmt.names:
        raise ConfigError(Problem(f"no target column '{target}'{did_you_mean(target, fmt.names)}; "
                                  f"columns are: {', '.join(fmt.names)}", where=path))
    table = read_table(path, fmt, names, target, dict.fromkeys(names, "numeric"), (), "error")
    return numeric_features(table.x, path), table.y


def _reshape(x: np.ndarray, input_shape: tuple, path: str) -> np.ndarray:
    if tuple(x.shape[1:]) == tuple(input_shape):
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(input_shape)):
        return x.reshape((len(x), *input_shape))
    raise ConfigError(Problem(
        f"features have shape {tuple(x.shape[1:])} per sample, the model takes {tuple(input_shape)}", where=path
    ))


__all__ = ["Dataset", "Split", "infer_task", "load_data", "read_features_file", "read_labeled_file"]
