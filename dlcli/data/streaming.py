"""`data.streaming`: splits whose samples stay in their file and are read a piece at a time.

A `StreamSplit` has the methods of `dlcli.data.dataset.Split` (length, steps, feature batches,
per-process shard, the arguments of `model.fit` / `evaluate`), over a `Rows` (a CSV or
Parquet table, an NPZ array: `dlcli.data.sources.base.Rows`) and the sorted numbers of the rows
that are its samples; the targets are held in memory, one value per sample. Memory then
depends on the size of a piece and of a batch, not of the file.

Keras takes the batches from `Batches`, a `keras.utils.PyDataset`, which every backend
(TensorFlow, JAX, PyTorch) reads. Each epoch of a shuffled split permutes the order of the
file's pieces (seeded by the run's seed and the epoch), reads consecutive pieces of that
order into windows of about `WINDOW_BYTES` of features, and permutes the samples inside
each window. A batch is therefore drawn from a window, not from the whole split: a local
shuffle, as `tf.data`'s `shuffle(buffer_size)` is. Because the split shuffles itself,
`Batches` hands out its batches in that order whatever index Keras asks for (Keras permutes
the indices of a PyDataset when `fit` is given `shuffle=True`; reading a window for each
batch Keras would pick at random would read the file once per batch).

Example:
    >>> split = StreamSplit(rows, np.arange(1000), y, batch_size=32, shuffle=True, seed=7)
    >>> len(split), split.steps(64), len(split.shard(1, 2, 8))
    (1000, 16, 496)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from dlcli.data.sources.base import Rows
from dlcli.errors import ConfigError, RunFailed, first_line

BATCH_ROWS = 4096  # rows per batch where dlcli itself walks a split (statistics, predictions)
BATCH_VALUES = 1 << 18  # ... at most this many input values (64 images of 64x64x3): a
# convolution's activations are tens of times its input, and a prediction holds them all


def rows_per_batch(sample_shape: tuple) -> int:
    """Samples per batch where dlcli walks a split: `BATCH_ROWS` of a table's rows, fewer of
    larger samples (images), at least 16."""
    return int(min(BATCH_ROWS, max(16, BATCH_VALUES // max(1, math.prod(sample_shape)))))


WINDOW_BYTES = 16 << 20  # features shuffled together: consecutive pieces of an epoch's order


@dataclass
class StreamSplit:
    """One split's samples, in a file: the rows `index` (sorted) of `rows`, their targets
    `y` (in the same order). `encode` turns a block of rows into the model's input in place
    (a table's category codes into its vocabulary); `batch_size` is `validation_data`'s."""

    rows: Rows
    index: np.ndarray
    y: np.ndarray
    batch_size: int = 32
    shuffle: bool = False
    seed: int = 0
    encode: Callable[[np.ndarray], object] | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def sample_shape(self) -> tuple:
        return tuple(self.rows.sample_shape)

    def steps(self, batch_size: int) -> int:
        """Batches per pass (the last one may be partial)."""
        return math.ceil(len(self) / batch_size)

    def feature_batches(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """The features, `rows` samples at a time (default: `rows_per_batch`), in order
        (the order of `y`)."""
        rows = rows or rows_per_batch(self.sample_shape)
        for x, _ in _rebatch(self._blocks(range(self.rows.pieces)), rows):
            yield x

    def raw(self, read: Callable[[int], np.ndarray]) -> Iterator[np.ndarray]:
        """This split's samples piece by piece, as `read(piece)` gives a piece (a text's
        documents, before they are vectorized)."""
        starts = self.rows.starts
        bounds = np.searchsorted(self.index, starts)
        for piece in range(self.rows.pieces):
            if bounds[piece] < bounds[piece + 1]:
                yield read(piece)[self.index[bounds[piece] : bounds[piece + 1]] - starts[piece]]

    def shard(self, index: int, count: int, multiple: int = 1) -> StreamSplit:
        """Process `index` of `count`'s share, as `Split.shard`: every `count`-th sample from
        `index`, the same number for every process, a multiple of `multiple`."""
        size = (len(self) // count) // multiple * multiple
        return replace(self, index=self.index[index::count][:size], y=self.y[index::count][:size])

    def keras_inputs(
        self,
        labels: Callable[[np.ndarray], np.ndarray],
        batch_size: int,
        weights: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> dict:
        """The arguments `model.fit` / `model.evaluate` take for this split: its batches,
        targets in the form the loss wants (`labels`), and each sample's weight where
        `weights` gives one from the targets."""
        return {"x": batches(self, labels, batch_size, weights)}

    def validation_data(self, labels: Callable[[np.ndarray], np.ndarray]):
        """What `model.fit(validation_data=...)` takes: the batches, never shuffled."""
        return batches(replace(self, shuffle=False), labels, self.batch_size)

    def epoch(self, batch_size: int, number: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) batches of one pass; shuffled (seeded by the seed and `number`) when the
        split shuffles, else in order."""
        if not self.shuffle:
            return _rebatch(self._blocks(range(self.rows.pieces)), batch_size)
        rng = np.random.default_rng([self.seed, number])
        order = rng.permutation(self.rows.pieces)
        per_row = np.dtype(self.rows.dtype).itemsize * max(1, math.prod(self.sample_shape))
        return _rebatch(
            self._windows(order, max(batch_size, WINDOW_BYTES // per_row), batch_size, rng),
            batch_size,
        )

    def _windows(
        self, order: np.ndarray, size: int, batch_size: int, rng
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The samples of consecutive pieces of `order`, about `size` at a time, in batches
        drawn in a random order of the window."""
        counts = np.diff(np.searchsorted(self.index, self.rows.starts))
        group, held = [], 0
        for piece in order:
            if counts[piece]:
                group.append(piece)
                held += int(counts[piece])
            if group and (held >= size or piece == order[-1]):
                yield from self._window(group, held, batch_size, rng)
                group, held = [], 0

    def _window(
        self, group: list, held: int, batch_size: int, rng
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x = np.empty(
            (held, *self.sample_shape), dtype=self.rows.dtype
        )  # filled in place: one copy of the window
        y = np.empty((held, *self.y.shape[1:]), dtype=self.y.dtype)
        at = 0
        for block_x, block_y in self._blocks(group):
            x[at : at + len(block_x)] = block_x
            y[at : at + len(block_y)] = block_y
            at += len(block_x)
        order = rng.permutation(held)
        for start in range(0, held, batch_size):
            take = order[start : start + batch_size]
            yield x[take], y[take]

    def _blocks(self, pieces) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(features, targets) of this split's samples in each of `pieces`, in that order."""
        starts = self.rows.starts
        bounds = np.searchsorted(self.index, starts)  # the split's samples before each piece
        for piece in pieces:
            low, high = bounds[piece], bounds[piece + 1]
            if low == high:
                continue
            local = self.index[low:high] - starts[piece]
            whole = len(local) == starts[piece + 1] - starts[piece]
            x = _read_again(self.rows, piece, None if whole else local)
            if self.encode is not None:
                self.encode(x)
            yield x, self.y[low:high]


def _read_again(rows: Rows, piece: int, local: np.ndarray | None = None) -> np.ndarray:
    """A piece of a file (its rows `local` where given) read and checked before the split
    was made: that it no longer reads (truncated, replaced or deleted since) is a failure of
    the run (exit 1), not a mistake in the config."""
    try:
        x = rows.read(piece) if local is None else rows.read_rows(piece, local)
    except (ConfigError, OSError) as exc:
        cause = (
            f"{exc.filename or 'the data file'}: {exc.strerror or first_line(exc)}"
            if isinstance(exc, OSError)
            else first_line(exc)
        )
    else:
        expected = int(rows.starts[piece + 1] - rows.starts[piece]) if local is None else len(local)
        if len(x) == expected:
            return x
        cause = f"part {piece + 1} of the file holds {len(x)} rows where it held {expected}"
    raise RunFailed(
        f"the data failed to load mid-run: {cause} (was the file changed, truncated or deleted "
        "while the run read it? restore it and resume the run)"
    )


def _rebatch(blocks, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of (x, y) of any length as batches of `size` (the last one may be smaller)."""
    xs, ys, held = [], [], 0
    for x, y in blocks:
        start = 0
        if held:
            take = min(size - held, len(x))
            xs.append(x[:take])
            ys.append(y[:take])
            held, start = held + take, take
            if held < size:
                continue
            yield np.concatenate(xs), np.concatenate(ys)
            xs, ys, held = [], [], 0
        while len(x) - start >= size:
            yield x[start : start + size], y[start : start + size]
            start += size
        if start < len(x):
            xs, ys, held = [x[start:]], [y[start:]], len(x) - start
    if held:
        yield np.concatenate(xs), np.concatenate(ys)


def tally(rows: Rows, counters: list[tuple[np.ndarray, object]]) -> None:
    """One pass over `rows`, each piece read once: `counter.add(block)` with the piece's rows
    that are in `index` (sorted), for each (index, counter)."""
    bounds = [np.searchsorted(index, rows.starts) for index, _ in counters]
    for piece in range(rows.pieces):
        wanted = [
            (index, counter, b[piece], b[piece + 1])
            for (index, counter), b in zip(counters, bounds)
        ]
        if all(low == high for _, _, low, high in wanted):
            continue
        x = rows.read(piece)
        for index, counter, low, high in wanted:
            if low < high:
                counter.add(x[index[low:high] - rows.starts[piece]])


_BATCHES = {}


def batches(
    split: StreamSplit,
    labels: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    weights: Callable[[np.ndarray], np.ndarray] | None = None,
):
    """A `Batches` PyDataset of the split (the class is made once Keras is imported):
    (x, y) batches, or (x, y, sample_weight) with `weights`."""
    if "class" not in _BATCHES:
        _BATCHES["class"] = _batches_class()
    return _BATCHES["class"](split, labels, batch_size, weights)


def _batches_class():
    from dlcli.runtime.keras_import import keras_module

    keras = keras_module()

    class Batches(keras.utils.PyDataset):
        """A split's (x, y) batches, targets in the loss's form, in the split's own order:
        batch `index` is the next batch of the epoch under way (see the module's docstring).
        An epoch begins at `on_epoch_begin`; batches asked for before it (TensorFlow's look
        at the first two, for their shapes) come from an epoch that is then begun again."""

        def __init__(self, split: StreamSplit, labels, batch_size: int, weights=None):
            super().__init__()
            self.split, self.labels, self.batch_size = split, labels, batch_size
            self.weights = weights
            self.number = -1
            self.stream = None

        def __len__(self) -> int:
            return self.split.steps(self.batch_size)

        def on_epoch_begin(self):
            self.number += 1
            self.stream = None

        def on_epoch_end(self):
            self.stream = None  # lets the window go

        def __getitem__(self, index):
            for _ in range(2):
                if self.stream is None:
                    self.stream = self.split.epoch(self.batch_size, max(self.number, 0))
                try:
                    x, y = next(self.stream)
                    if self.weights is not None:
                        return x, self.labels(y), self.weights(y)
                    return x, self.labels(y)
                except StopIteration:  # more batches asked for than a pass holds: a new pass
                    self.stream = None
            raise IndexError(index)

    return Batches


__all__ = ["BATCH_ROWS", "StreamSplit", "batches", "rows_per_batch", "tally"]
