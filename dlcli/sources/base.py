"""The interface every data source implements: `Source.load(config) -> Loaded`."""

from __future__ import annotations

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


class Source:
    """Reads one kind of data. Subclasses set `names` and implement `load`."""

    names: tuple[str, ...] = ()

    def load(self, config) -> Loaded:
        """Read the data the config's `data:` section names; ConfigError for a bad file."""
        raise NotImplementedError


def numeric_features(x: np.ndarray, shown: str) -> np.ndarray:
    """Features from a file as float32 (a column vector for 1-D input); a ConfigError
    naming the file for text or NaN/inf."""
    if x.dtype.kind not in "biuf":
        raise ConfigError(Problem(f"features are of type {x.dtype}, not numbers", where=shown))
    x = x.astype("float32")
    if x.ndim == 1:
        x = x[:, None]
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])
        raise ConfigError(Problem(f"features hold NaN or inf (first at sample {bad}); clean the data", where=shown))
    return x


def plain(value):
    """numpy scalars -> JSON-friendly Python values."""
    return value.item() if hasattr(value, "item") else value
