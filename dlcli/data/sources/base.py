"""The interface every data source implements: `Source.load(config) -> Loaded`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dlcli.errors import ConfigError, Problem


@dataclass
class Loaded:
    """What a source read, before any split. `x_test`/`y_test` only where the source has a
    test set of its own; `task` where the source decides it (a regression dataset)."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    feature_names: list[str] | None = None
    labels: list | None = None
    files: dict[str, str] = field(default_factory=dict)
    task: str | None = None
    table: object | None = (
        None  # a table's columns and categories (`dlcli.data.sources.table.TableInfo`)
    )
    y_labels: list | None = None  # streamed text targets: y holds codes into these sorted labels
    media: dict | None = None  # images: the layout, size, classes and skipped files (run.json)


class Rows:
    """Samples that stay in a file and are read a piece at a time (`data.streaming`): what
    a source gives as `Loaded.x` / `x_test` instead of an array.

    `starts[k]` is the first sample of piece `k` and `starts[-1]` the number of samples;
    `read(k)` returns piece `k`'s samples as `dtype` (float32; images uint8),
    `(rows, *sample_shape)`: a table's categorical columns as codes into the file's
    categories, as `read_table` gives them.
    """

    sample_shape: tuple = ()
    starts: np.ndarray = np.zeros(1, dtype="int64")
    dtype: str = "float32"  # what `read` gives (images: uint8 pixels)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def pieces(self) -> int:
        return len(self.starts) - 1

    def read(self, piece: int) -> np.ndarray:
        raise NotImplementedError

    def read_rows(self, piece: int, local: np.ndarray) -> np.ndarray:
        """Piece `piece`'s samples at positions `local` (sorted) within it."""
        x = self.read(piece)
        if len(x) != int(self.starts[piece + 1] - self.starts[piece]):
            return x  # the caller names the change
        return x[local]


class Source:
    """Reads one kind of data. Subclasses set `names` and implement `load`."""

    names: tuple[str, ...] = ()

    def load(self, config) -> Loaded:
        """Read the data the config's `data:` section names; ConfigError for a bad file."""
        raise NotImplementedError


FLOAT32_MAX = float(np.finfo("float32").max)  # about 3.4e38: larger numbers become inf
SAMPLE = "one value (or one row) per sample"


def numeric_features(x: np.ndarray, shown: str, name: str = "features") -> np.ndarray:
    """Features from a file as float32 (a column vector for 1-D input); a ConfigError
    naming the file (`shown`) and the array (`name`) for text, a single number, no
    features per sample, or NaN/inf after the cast (1e39 is finite in float64, inf in float32)."""
    if x.dtype.kind not in "biuf":
        raise ConfigError(
            Problem(
                f"{name} is of type {x.dtype}, not numbers; features must be numeric", where=shown
            )
        )
    if x.ndim == 0:
        raise ConfigError(
            Problem(f"{name} holds a single number; it must hold one row per sample", where=shown)
        )
    if 0 in x.shape[1:]:
        raise ConfigError(
            Problem(
                f"{name} has no features (shape {x.shape}); each sample needs at least one number",
                where=shown,
            )
        )
    values = float32(x)
    if values.ndim == 1:
        values = values[:, None]
    check_finite(values, x, shown, name)
    return values


def check_finite(
    values: np.ndarray, x: np.ndarray, shown: str, name: str = "features", first: int = 0
) -> None:
    """A ConfigError naming the first sample of `values` (x as float32) that holds NaN/inf;
    `first` is the number of `x`'s first sample (for a file read in pieces)."""
    bad = first_not_finite(values)
    if bad is None:
        return
    original = x.reshape(len(x), -1)[bad]
    sample = first + bad[0]
    if np.isfinite(original):
        raise ConfigError(
            Problem(
                f"{name} holds {original.item():g} at sample {sample}, out of float32 range "
                f"(±{FLOAT32_MAX:.3g}); rescale the data",
                where=shown,
            )
        )
    raise ConfigError(
        Problem(f"{name}: NaN or inf at sample {sample} (the first); clean the data", where=shown)
    )


def checked_targets(y: np.ndarray, shown: str, name: str = "targets") -> np.ndarray:
    """Targets from a file, as read; a ConfigError naming the file and the array for a
    single value, a shape that is not one value (or one-hot row) per sample, a type that is
    neither numbers nor text, or a number that is NaN/inf in float32."""
    if y.ndim == 0:
        raise ConfigError(
            Problem(f"{name} holds a single value; it must hold {SAMPLE}", where=shown)
        )
    if y.ndim > 2 or 0 in y.shape[1:]:
        raise ConfigError(
            Problem(f"{name} has shape {y.shape}; it must hold {SAMPLE}", where=shown)
        )
    if y.dtype.kind not in "biufUS":
        raise ConfigError(
            Problem(
                f"{name} is of type {y.dtype}; it must hold numbers or text labels", where=shown
            )
        )
    bad = first_not_finite(float32(y)) if y.dtype.kind == "f" else None
    if bad is not None:
        value = y.reshape(len(y), -1)[bad].item()
        reason = f"{value:g} at sample {bad[0]}" + (
            ", out of float32 range" if math.isfinite(value) else ""
        )
        raise ConfigError(Problem(f"{name} holds {reason}; fix or drop that sample", where=shown))
    return y


def float32(x: np.ndarray) -> np.ndarray:
    """`x` as float32, out-of-range numbers as inf without numpy's overflow warning."""
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype("float32")


def first_not_finite(x: np.ndarray) -> tuple[int, int] | None:
    """(sample, position in the flattened sample) of the first NaN/inf, or None."""
    finite = np.isfinite(x)
    if finite.all():
        return None
    sample, position = np.argwhere(~finite.reshape(len(x), -1))[0]
    return int(sample), int(position)


def plain(value):
    """numpy scalars -> JSON-friendly Python values."""
    return value.item() if hasattr(value, "item") else value
