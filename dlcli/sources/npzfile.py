"""NPZ arrays: `data.source: npz` with `x_train`, `y_train` and optionally `x_test`,
`y_test` (names configurable under `data.keys`). Never unpickled: an NPZ holding Python
objects is refused."""

from __future__ import annotations

import numpy as np

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.sources.base import Loaded, Source, numeric_features
from dlcli.sources.files import NOT_FOUND, sha256_file


class NpzFile(Source):
    names = ("npz",)

    def load(self, config) -> Loaded:
        d, k = config.data, config.data.keys
        arrays = read_npz(d.path, [k.x_train, k.y_train], (k.x_test, k.y_test), config.where(("data", "path")))
        x, y = numeric_features(arrays[k.x_train], d.path), arrays[k.y_train]
        if len(x) != len(y):
            raise ConfigError(Problem(f"{k.x_train} has {len(x)} samples but {k.y_train} has {len(y)}", where=d.path))
        if (k.x_test in arrays) != (k.y_test in arrays):
            raise ConfigError(Problem(f"the NPZ has only one of {k.x_test} / {k.y_test}; add both or neither", where=d.path))
        x_test = y_test = None
        if k.x_test in arrays:
            x_test, y_test = numeric_features(arrays[k.x_test], d.path), arrays[k.y_test]
        return Loaded(x=x, y=y, x_test=x_test, y_test=y_test, files={d.path: sha256_file(d.path)})


def read_npz(path: str, keys: list[str] | None, optional: tuple = (), where: str = "") -> dict:
    """Arrays from an NPZ file (never unpickled): `keys` (a missing one names those there)
    and the `optional` ones present, or every array when `keys` is None."""
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
                    where=where or path,
                ))
            return {k: archive[k] for k in [*keys, *optional] if k in present}
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(Problem(NOT_FOUND, where=path)) from None
    except ValueError as exc:
        reason = "it holds Python objects, which dlcli never unpickles" if "pickle" in str(exc) else str(exc)
        raise ConfigError(Problem(f"not a usable NPZ file: {reason}", where=path)) from None
    except Exception as exc:  # noqa: BLE001 - zip, OS and numpy errors alike
        raise ConfigError(Problem(f"not a readable NPZ file ({type(exc).__name__}: {exc})", where=path)) from None


def read_features(path: str) -> np.ndarray:
    """Features for `predict`: the array `x` (or `x_test`, `x_train`, or the only one)."""
    arrays = read_npz(path, None)
    key = next((k for k in ("x", "x_test", "x_train") if k in arrays), None)
    key = key or (next(iter(arrays)) if len(arrays) == 1 else None)
    if key is None:
        raise ConfigError(Problem(f"name the features array 'x' (it holds: {', '.join(arrays) or 'nothing'})", where=path))
    return numeric_features(arrays[key], path)


def read_labeled(path: str, keys) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets for `evaluate --data`: x_test/y_test (or x/y, or x_train/y_train)."""
    arrays = read_npz(path, None)
    pairs = ((keys.x_test, keys.y_test), ("x", "y"), (keys.x_train, keys.y_train))
    pair = next(((a, b) for a, b in pairs if a in arrays and b in arrays), None)
    if pair is None:
        raise ConfigError(Problem(f"expected arrays x_test and y_test (or x and y); it holds: {', '.join(arrays)}", where=path))
    return numeric_features(arrays[pair[0]], path), arrays[pair[1]]
