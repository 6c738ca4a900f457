"""Data: a config's source turned into seeded train / validation / test splits.

`load_data` asks the config's source (`dlcli.data.sources`) for what it holds, then decides the
task, encodes class targets as indices 0..K-1 (`Dataset.labels` keeps the original label
of each), splits with scikit-learn's `train_test_split` (seeded, stratified for classes; a
`dlcli cv` fold with its k-fold cut: `dlcli.data.splits`) and fingerprints the result. Nothing here knows the model: normalisation is fitted on the
training split by `dlcli.model.inputs`, so that it travels inside the saved model.

Training reaches samples only through `Split`: its length, its batches, its per-process
shard and the arguments `model.fit` / `evaluate` take. With `data.streaming` a source gives
its features as `Rows` that stay in the file, and the splits are `StreamSplit`s
(`dlcli.data.streaming`) with the same methods: the split is made on the row numbers with the
targets alone (the same `train_test_split`, so the same rows land in the same split), and a
table's statistics come from one pass over the training rows first (`TableCounts`).

Every problem with the data is a `ConfigError` that names the file, the line where there is
one, and the fix: it is found before any training starts. That includes a split fraction
that would leave a split empty, or training with fewer than `MIN_TRAIN` samples (at the
config's line for that key).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dlcli.config.schema import FILE_SOURCES, Config, FeatureConfig
from dlcli.data import splits
from dlcli.data.sources import source_for
from dlcli.data.sources.base import Rows, plain
from dlcli.data.sources.datafile import streams
from dlcli.data.streaming import StreamSplit, rows_per_batch, tally
from dlcli.data.tables.preprocessing import TableCounts, TablePreprocessing, fit
from dlcli.errors import ConfigError, Problem, RunFailed, did_you_mean
from dlcli.runtime.losses import task_of

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

    @property
    def sample_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    def steps(self, batch_size: int) -> int:
        """Batches per pass (the last one may be partial)."""
        return math.ceil(len(self) / batch_size)

    def feature_batches(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """The features, `rows` samples at a time (default: `rows_per_batch`), in order."""
        rows = rows or rows_per_batch(self.sample_shape)
        for start in range(0, len(self), rows):
            yield self.x[start : start + rows]

    def shard(self, index: int, count: int, multiple: int = 1) -> Split:
        """Process `index` of `count`'s share: every `count`-th sample from `index`, cut so
        that every process holds the same number of samples, a multiple of `multiple` (its
        devices): JAX assembles each global batch from equal per-process parts. At most
        `count * multiple - 1` samples of the split are left out."""
        size = (len(self) // count) // multiple * multiple
        return Split(self.x[index::count][:size], self.y[index::count][:size])

    def keras_inputs(
        self,
        labels: Callable[[np.ndarray], np.ndarray],
        batch_size: int,
        weights: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> dict:
        """The arguments `model.fit` / `model.evaluate` take for this split; `labels` turns
        the targets into the form the loss wants, `weights` (if given) into each sample's
        weight."""
        given = {"x": self.x, "y": labels(self.y), "batch_size": batch_size}
        if weights is not None:
            given["sample_weight"] = weights(self.y)
        return given

    def validation_data(self, labels: Callable[[np.ndarray], np.ndarray]):
        """What `model.fit(validation_data=...)` takes for this split."""
        return self.x, labels(self.y)


@dataclass
class Dataset:
    """A config's data: the splits, and what is known about them."""

    train: Split | StreamSplit
    test: Split | StreamSplit
    val: Split | StreamSplit | None = None
    task: str = "classification"
    labels: list | None = None
    feature_names: list[str] | None = None
    target: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    preprocessing: TablePreprocessing | None = None  # a table's: fitted on the training split
    media: dict | None = None  # images, text, audio: layout, settings, classes, skipped files
    media_kind: str | None = None  # images | text | audio: run.json's key for `media`
    text: object | None = None  # text: the vectorizer's `TextPreprocessing`, fitted on train

    @property
    def one_hot(self) -> bool:
        y = self.train.y
        return self.task == "classification" and y.ndim == 2 and y.shape[1] > 1

    @property
    def n_classes(self) -> int:
        return len(self.labels) if self.labels is not None else 0

    @property
    def input_shape(self) -> tuple:
        return self.train.sample_shape

    @property
    def streaming(self) -> bool:
        return isinstance(self.train, StreamSplit)

    @property
    def target_width(self) -> int:
        """Numbers per sample in a regression target."""
        y = self.train.y
        return 1 if y.ndim == 1 else int(y.shape[1])

    def split(self, name: str) -> Split | StreamSplit:
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
            "streaming": self.streaming,
            "fingerprint": self.fingerprint,
            "fingerprint_of": "files' SHA-256, split row numbers, targets"
            if self.streaming
            else "split arrays",
            **({"rows": self.preprocessing.rows} if self.preprocessing is not None else {}),
            **({self.media_kind: self._media_summary()} if self.media is not None else {}),
        }

    def _media_summary(self) -> dict:
        """Media: the source's record, with each split's count per class (and text's
        vocabulary)."""
        media = {**self.media, **({"vocabulary": self.text.summary()} if self.text else {})}
        if self.labels is None:
            return media
        per_split = {}
        for name, split in (("train", self.train), ("val", self.val), ("test", self.test)):
            if split is not None:
                counts = np.bincount(np.asarray(split.y, dtype="int64"), minlength=self.n_classes)
                per_split[name] = {str(k): int(n) for k, n in zip(self.labels, counts)}
        return {**media, "split_counts": per_split}


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


def _encode(y_train, y_test, task: str, where: str, names: list | None = None):
    """Class targets -> indices 0..K-1 (and the labels), or regression targets -> float32.
    `names`: the targets are codes into these text labels (a streamed table)."""
    if task == "regression":
        try:
            if names is not None:
                raise TypeError(names)
            return y_train.astype("float32"), y_test.astype("float32"), None
        except (TypeError, ValueError):
            raise ConfigError(
                Problem(
                    "the target holds text, so it cannot be regressed; use a classification loss "
                    "(sparse_categorical_crossentropy) or set data.task: classification",
                    where=where,
                )
            ) from None
    if y_train.ndim == 2 and y_train.shape[1] > 1:  # already one-hot
        return y_train.astype("float32"), y_test.astype("float32"), list(range(y_train.shape[1]))
    if y_train.dtype.kind == "f" and not np.all(np.mod(y_train, 1) == 0):
        raise ConfigError(
            Problem(
                "the target holds fractional numbers, so it is not a set of classes; "
                "use a regression loss (mean_squared_error) or set data.task: regression",
                where=where,
            )
        )
    shown = plain if names is None else (lambda code: names[int(code)])
    values = y_train.astype(str) if y_train.dtype == object else y_train
    classes = np.unique(values)
    if len(classes) < 2:
        raise ConfigError(
            Problem(
                f"the target has a single class ({shown(classes[0])!r}); classification needs at least two",
                where=where,
            )
        )
    lookup = {plain(c): i for i, c in enumerate(classes)}
    test_values = y_test.astype(str) if y_test.dtype == object else y_test
    unseen = [plain(v) for v in np.unique(test_values) if plain(v) not in lookup]
    if unseen:
        raise ConfigError(
            Problem(
                unseen_labels([shown(v) for v in unseen], [shown(c) for c in classes]), where=where
            )
        )
    # Each value's index among the sorted classes (np.unique's inverse, in a third of its
    # memory: a streamed split holds millions of targets).
    y_index, y_test_index = np.searchsorted(classes, values), np.searchsorted(classes, test_values)
    return (
        y_index.astype("int64", copy=False),
        y_test_index.astype("int64", copy=False),
        [shown(c) for c in classes],
    )


def unseen_labels(unseen: list, labels: list) -> str:
    """The sentence for target labels the model never learned, each with a did-you-mean."""
    shown = "; ".join(
        f"{v!r}{did_you_mean(str(v), [str(label) for label in labels])}" for v in unseen[:5]
    )
    more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
    return (
        f"the target holds labels never seen in training: {shown}{more}; "
        f"the classes are: {', '.join(map(str, labels[:20]))}"
    )


def _fingerprint(*splits: Split | None) -> str:
    digest = hashlib.sha256()
    for split in splits:
        if split is not None:
            for array in (split.x, split.y):
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load_data(config: Config, fitted: TablePreprocessing | None = None) -> Dataset:
    """Load, check, encode and split the config's data.

    `fitted`, a run's own table preprocessing, is applied instead of one fitted anew (the
    columns and their types are its own): what a finished run's splits are scored with.
    Running out of memory while reading is a `RunFailed` (one line) naming the way out.

    Example:
        >>> ds = load_data(load_config("configs/digits_mlp.yaml"))
        >>> len(ds.train), ds.n_classes
        (1149, 10)
    """
    if isinstance(fitted, TablePreprocessing):
        config = config.model_copy(deep=True)
        config.data.features = [FeatureConfig(name=f.name, type=f.type) for f in fitted.features]
    try:
        loaded = source_for(config.data.source).load(config)
        if isinstance(loaded.x, Rows):
            return _streamed(config, loaded, fitted)
        return _in_memory(config, loaded, fitted)
    except MemoryError as exc:
        if config.data.source not in FILE_SOURCES:
            fix = "use a machine with more memory"
        elif streams(config):
            fix = (
                "a streamed run still holds each split's targets and row numbers (about 12 bytes a row); "
                "use a machine with more memory"
            )
        else:
            fix = "set data.streaming: true to read the files in parts"
        raise RunFailed(
            f"out of memory while loading the data ({exc or 'MemoryError'}); {fix}"
        ) from None


def _in_memory(config: Config, loaded, fitted: TablePreprocessing | None = None) -> Dataset:
    d = config.data
    x, y, x_test, y_test = loaded.x, np.asarray(loaded.y), loaded.x_test, loaded.y_test
    if len(x) < 4:
        raise ConfigError(
            Problem(
                f"only {len(x)} samples; too few to split and train",
                where=config.where(("data", "source")),
            )
        )
    task = infer_task(config, y, loaded.task)
    if x_test is None:
        splits.check_fraction(config, "test_split", len(x), MIN_TRAIN + (d.validation_split > 0))
        x, x_test, y, y_test = splits.split(
            x,
            y,
            d.test_split,
            config.seed,
            task == "classification",
            config.where(("data", "test_split")),
        )
    where = config.where(("data", "target" if d.target else "source"))
    y, y_test, classes = _encode(y, np.asarray(y_test), task, where)
    labels = _labels(loaded, task, classes)
    val = None
    if d.fold is not None:
        x, x_val, y, y_val = splits.fold(x, y, config, task == "classification")
        val = Split(x_val, y_val)
    elif d.validation_split > 0:
        splits.check_fraction(config, "validation_split", len(x), MIN_TRAIN)
        x, x_val, y, y_val = splits.split(
            x,
            y,
            d.validation_split,
            config.seed,
            task == "classification",
            config.where(("data", "validation_split")),
        )
        val = Split(x_val, y_val)
    train, test = Split(x, y), Split(x_test, y_test)
    preprocessing = None
    if loaded.table is not None:  # categories and statistics of the training rows only
        table = loaded.table
        preprocessing = fitted or fit(table, train.x, d.normalize)
        if "text" in table.kinds and fitted is None:  # adapted on the training rows only
            preprocessing.fit_text(d.text, train.x, table.categories)
        for split in (train, val):
            if split is not None:
                preprocessing.encode(split.x, table.categories)
                split.x = preprocessing.joined(split.x, table.categories)
        test_categories = table.test_categories or table.categories
        preprocessing.unseen = preprocessing.encode(test.x, test_categories)
        if fitted is None:
            preprocessing.text_unknown_share(test.x, test_categories)
        test.x = preprocessing.joined(test.x, test_categories)
    return _dataset(
        config,
        loaded,
        (train, val, test),
        task,
        labels,
        _fingerprint(train, val, test),
        preprocessing,
    )


def _dataset(
    config: Config, loaded, splits: tuple, task: str, labels, fingerprint: str, preprocessing
) -> Dataset:
    """The Dataset of `splits` (train, val, test), in memory or streamed alike."""
    train, val, test = splits
    return Dataset(
        train=train,
        val=val,
        test=test,
        task=task,
        labels=labels,
        feature_names=loaded.feature_names,
        target=loaded.table.target if loaded.table else config.data.target,
        files=loaded.files,
        fingerprint=fingerprint,
        preprocessing=preprocessing,
        media=loaded.media,
        media_kind=config.data.source if loaded.media is not None else None,
    )


def _labels(loaded, task: str, classes: list | None) -> list | None:
    """The original label of each class index (None for regression)."""
    if task != "classification":
        return None
    known = loaded.labels
    return (
        [known[i] for i in classes]
        if known is not None and all(isinstance(c, int) for c in classes)
        else classes
    )


def _streamed(config: Config, loaded, fitted: TablePreprocessing | None = None) -> Dataset:
    """`load_data` for `data.streaming`: the same split of the same rows, made on row
    numbers with the targets alone; the samples stay in the files (`StreamSplit`)."""
    d, t = config.data, config.training
    rows, y = loaded.x, np.asarray(loaded.y)
    loaded.y = None  # the splits' targets replace it
    if len(rows) < 4:
        raise ConfigError(
            Problem(
                f"only {len(rows)} samples; too few to split and train",
                where=config.where(("data", "source")),
            )
        )
    task = infer_task(config, y, loaded.task)
    stratify = task == "classification"
    index, test_rows = _row_numbers(len(rows)), rows
    if loaded.x_test is None:
        splits.check_fraction(config, "test_split", len(rows), MIN_TRAIN + (d.validation_split > 0))
        index, test_index, y, y_test = splits.split(
            index,
            y,
            d.test_split,
            config.seed,
            stratify,
            config.where(("data", "test_split")),
            lean=True,
        )
    else:
        test_rows, y_test = loaded.x_test, np.asarray(loaded.y_test)
        test_index = _row_numbers(len(test_rows))
    where = config.where(("data", "target" if d.target else "source"))
    y, y_test, classes = _encode(y, y_test, task, where, loaded.y_labels)
    labels = _labels(loaded, task, classes)
    val = None
    if d.fold is not None:
        index, val_index, y, y_val = splits.fold(index, y, config, stratify)
        val = _sorted(rows, val_index, y_val, batch_size=t.batch_size)
    elif d.validation_split > 0:
        splits.check_fraction(config, "validation_split", len(index), MIN_TRAIN)
        index, val_index, y, y_val = splits.split(
            index,
            y,
            d.validation_split,
            config.seed,
            stratify,
            config.where(("data", "validation_split")),
            lean=True,
        )
        val = _sorted(rows, val_index, y_val, batch_size=t.batch_size)
    train = _sorted(rows, index, y, batch_size=t.batch_size, shuffle=t.shuffle, seed=config.seed)
    test = _sorted(test_rows, test_index, y_test, batch_size=t.batch_size)
    preprocessing = None
    if loaded.table is not None:
        preprocessing = _fit_streamed(loaded.table, train, val, test, d.normalize, fitted)
    text = _fit_text(config, loaded, train, test, fitted) if d.source == "text" else None
    fingerprint = _stream_fingerprint(loaded.files, train, val, test)
    dataset = _dataset(config, loaded, (train, val, test), task, labels, fingerprint, preprocessing)
    dataset.text = text
    return dataset


def _fit_text(config: Config, loaded, train: StreamSplit, test: StreamSplit, fitted):
    """The run's vectorizer, adapted on the training split's documents only (or `fitted`,
    a finished run's), set on the rows so that every split reads token ids; the share of
    unknown tokens in the test split."""
    from dlcli.data.media.vocabulary import TextPreprocessing

    column = (loaded.media or {}).get("path", {}).get("column")
    text = fitted or TextPreprocessing.fit(config.data.text, train.raw(train.rows.texts), column)
    if not text.vocabulary:
        raise ConfigError(
            Problem(
                "the training documents hold no token (every one is empty or punctuation); "
                "point data.path at the text",
                where=config.where(("data", "path")),
            )
        )
    for rows in {id(train.rows): train.rows, id(test.rows): test.rows}.values():
        rows.use(text)
    if fitted is None:
        text.oov = {"test": text.unknown_share(test.raw(test.rows.texts))}
    return text


def _row_numbers(count: int) -> np.ndarray:
    """0 .. count-1, in 4 bytes each where they fit."""
    return np.arange(count, dtype="int32" if count < 2**31 else "int64")


def _sorted(rows: Rows, index: np.ndarray, y: np.ndarray, **options) -> StreamSplit:
    """A split of `rows` with its row numbers in file order (and the targets with them)."""
    order = np.argsort(index, kind="stable")
    return StreamSplit(rows, index[order], y[order], **options)


def _fit_streamed(
    table,
    train: StreamSplit,
    val: StreamSplit | None,
    test: StreamSplit,
    normalize,
    fitted: TablePreprocessing | None = None,
) -> TablePreprocessing:
    """The table's preprocessing from one pass over the training rows (the test rows'
    categories counted in the same pass, or one over the test file), or `fitted`, and the
    splits set to encode their rows with it."""
    counts = TableCounts(table.kinds, table.categories)
    test_counts = TableCounts(table.kinds, table.categories)
    categorical = "categorical" in table.kinds
    passes = [] if fitted is not None else [(train.index, counts)]
    if test.rows is train.rows:
        passes += [(test.index, test_counts)] if categorical else []
        if passes:
            tally(train.rows, passes)
    else:
        if passes:
            tally(train.rows, passes)
        if categorical:
            tally(test.rows, [(test.index, test_counts)])
    preprocessing = fitted or counts.fit(table, normalize)
    test_categories = table.test_categories or table.categories
    preprocessing.unseen = preprocessing.unseen_in(test_counts.codes, test_categories)
    for split in (train, val):
        if split is not None:
            split.encode = functools.partial(preprocessing.encode, categories=table.categories)
    test.encode = functools.partial(preprocessing.encode, categories=test_categories)
    return preprocessing


def _stream_fingerprint(files: dict, *splits: StreamSplit | None) -> str:
    """The files' SHA-256, then each split's row numbers and targets."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(files[path].encode())
    for split in splits:
        if split is not None:
            for array in (split.index, split.y):
                digest.update(
                    memoryview(np.ascontiguousarray(array)).cast("B")
                )  # no copy of the array
            digest.update(b"/")
    return digest.hexdigest()


__all__ = ["Dataset", "Split", "infer_task", "load_data"]
