"""NPZ arrays: `data.source: npz` with `x_train`, `y_train` and optionally `x_test`,
`y_test` (names configurable under `data.keys`).

An NPZ is a zip of `.npy` members. Before any array is read, every member's `.npy` header
is checked against the zip's own record of its size, and the arrays to be read against a
memory limit, so that a small file that unpacks to gigabytes (a decompression bomb) is
refused rather than read. Never unpickled: an NPZ holding Python objects is refused.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy

from dlcli.errors import ConfigError, Problem, did_you_mean, first_line
from dlcli.sources.base import Loaded, Source, checked_targets, numeric_features
from dlcli.sources.files import data_file, sha256_file

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive; an empty archive
NPY_MAGIC = b"\x93NUMPY"
HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
LIMIT_VARIABLE = "DLCLI_MAX_ARRAY_BYTES"


class NpzFile(Source):
    names = ("npz",)

    def load(self, config) -> Loaded:
        d, k = config.data, config.data.keys
        pick = required([k.x_train, k.y_train], (k.x_test, k.y_test), config.where(("data", "path")))
        arrays = read_npz(d.path, pick)
        x, y = _pair(arrays, k.x_train, k.y_train, d.path)
        if (k.x_test in arrays) != (k.y_test in arrays):
            raise ConfigError(Problem(f"the NPZ has only one of {k.x_test} / {k.y_test}; add both or neither", where=d.path))
        x_test = y_test = None
        if k.x_test in arrays:
            x_test, y_test = _pair(arrays, k.x_test, k.y_test, d.path)
        return Loaded(x=x, y=y, x_test=x_test, y_test=y_test, files={d.path: sha256_file(d.path)})


@dataclass(frozen=True)
class Member:
    """One `.npy` member of the archive, as its header declares it."""

    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype
    nbytes: int


def required(keys: list[str], optional: tuple = (), where: str = "") -> Callable[[list[str]], list[str]]:
    """A `pick` for `read_npz`: `keys` (a missing one is a ConfigError at `where` naming the
    arrays there) and the `optional` ones present."""

    def pick(present: list[str]) -> list[str]:
        missing = [k for k in keys if k not in present]
        if missing:
            raise ConfigError(Problem(
                f"no array '{missing[0]}' in the NPZ{did_you_mean(missing[0], present)}; it holds: "
                f"{', '.join(present) or 'nothing'} (set data.keys to name them)",
                where=where,
            ))
        return [k for k in [*keys, *optional] if k in present]

    return pick


def read_npz(path: str, pick: Callable[[list[str]], list[str]] | None = None) -> dict:
    """The arrays `pick(names present)` chooses (every one by default) from an NPZ file.

    A ConfigError naming the file for anything but a regular zip of numeric or text `.npy`
    arrays whose headers match their sizes, or arrays larger than `max_array_bytes()`.
    """
    data_file(path)
    _check_magic(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(archive, path)
            names = pick(list(members)) if pick else list(members)
            _check_size(path, [(name, members[name]) for name in names])
            return {name: _read(archive, members[name]) for name in names}
    except (ConfigError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - zip, OS and numpy errors alike
        raise ConfigError(Problem(
            f"not a readable NPZ file ({type(exc).__name__}: {first_line(exc)[:200]}); save it again with numpy.savez",
            where=path,
        )) from None


def max_array_bytes() -> int:
    """The most bytes of arrays read from one NPZ: DLCLI_MAX_ARRAY_BYTES, by default half
    of this machine's physical memory."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if text:
        try:
            limit = int(float(text))
        except ValueError:
            limit = 0
        if limit <= 0:
            raise ConfigError(Problem(f"must be a number of bytes, such as 8000000000, not {text!r}", where=LIMIT_VARIABLE))
        return limit
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return 8 << 30


def _check_magic(path: str) -> None:
    """Refuse a file that does not start as a zip archive (an NPZ is one)."""
    with open(path, "rb") as handle:
        start = handle.read(len(NPY_MAGIC))
    if start.startswith(NPY_MAGIC):
        raise ConfigError(Problem(
            "is a single .npy array, not an NPZ (zip) file; save the arrays with numpy.savez(path, x_train=..., y_train=...)",
            where=path,
        ))
    if not start.startswith(ZIP_MAGIC):
        raise ConfigError(Problem(
            "is not an NPZ (zip) file; save the arrays with numpy.savez(path, x_train=..., y_train=...)", where=path,
        ))


def _members(archive: zipfile.ZipFile, path: str) -> dict[str, Member]:
    """Every `.npy` member by array name, from its header alone (no array data is read)."""
    members = {}
    for info in archive.infolist():
        if info.is_dir() or not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-len(".npy")]
        with archive.open(info) as handle:
            version = npy.read_magic(handle)
            if version not in HEADER_READERS:
                raise ConfigError(Problem(
                    f"array '{name}' is in .npy format {version[0]}.{version[1]}, which dlcli does not read; "
                    "save it with numpy.savez", where=path,
                ))
            shape, _, dtype = HEADER_READERS[version](handle)
            header = handle.tell()
        if dtype.hasobject:
            raise ConfigError(Problem(
                f"not a usable NPZ file: array '{name}' holds Python objects, which dlcli never unpickles; "
                "save numbers or text", where=path,
            ))
        nbytes = math.prod(shape) * dtype.itemsize
        if header + nbytes != info.file_size:
            raise ConfigError(Problem(
                f"array '{name}' declares {nbytes:,} bytes ({dtype} {shape}) but its zip member holds "
                f"{info.file_size - header:,}; the file is damaged or forged, save it again with numpy.savez",
                where=path,
            ))
        members[name] = Member(info, shape, dtype, nbytes)
    return members


def _check_size(path: str, chosen: list[tuple[str, Member]]) -> None:
    """Refuse arrays that would take more memory than `max_array_bytes()` once read."""
    total, limit = sum(m.nbytes for _, m in chosen), max_array_bytes()
    if total <= limit:
        return
    sizes = ", ".join(f"{name} {m.dtype}{list(m.shape)} {m.nbytes:,} bytes" for name, m in chosen)
    origin = f"set by {LIMIT_VARIABLE}" if os.environ.get(LIMIT_VARIABLE) else f"half this machine's memory; {LIMIT_VARIABLE} sets it"
    raise ConfigError(Problem(
        f"its arrays would take {total:,} bytes of memory once unpacked ({sizes}; the file is "
        f"{os.path.getsize(path):,} bytes), over the limit of {limit:,} bytes ({origin}); use a smaller file "
        "(data.streaming, coming later, will read large files in parts)",
        where=path,
    ))


def _read(archive: zipfile.ZipFile, member: Member) -> np.ndarray:
    """One array, read as its (checked) header declares: never unpickled."""
    with archive.open(member.info) as handle:
        return npy.read_array(handle, allow_pickle=False)


def _pair(arrays: dict, x_key: str, y_key: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked features and targets of one split, with as many samples each."""
    x = numeric_features(arrays[x_key], path, x_key)
    y = checked_targets(arrays[y_key], path, y_key)
    if len(x) != len(y):
        raise ConfigError(Problem(f"{x_key} has {len(x)} samples but {y_key} has {len(y)}", where=path))
    return x, y


def read_features(path: str) -> np.ndarray:
    """Features for `predict`: the array `x` (or `x_test`, `x_train`, or the only one)."""

    def pick(present: list[str]) -> list[str]:
        key = next((k for k in ("x", "x_test", "x_train") if k in present), None)
        key = key or (present[0] if len(present) == 1 else None)
        if key is None:
            raise ConfigError(Problem(f"name the features array 'x' (it holds: {', '.join(present) or 'nothing'})", where=path))
        return [key]

    (key, x), = read_npz(path, pick).items()
    return numeric_features(x, path, key)


def read_labeled(path: str, keys) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets for `evaluate --data`: x_test/y_test (or x/y, or x_train/y_train)."""

    def pick(present: list[str]) -> list[str]:
        pairs = ((keys.x_test, keys.y_test), ("x", "y"), (keys.x_train, keys.y_train))
        pair = next(([a, b] for a, b in pairs if a in present and b in present), None)
        if pair is None:
            raise ConfigError(Problem(f"expected arrays x_test and y_test (or x and y); it holds: {', '.join(present)}", where=path))
        return pair

    arrays = read_npz(path, pick)
    return _pair(arrays, *pick(list(arrays)), path)
