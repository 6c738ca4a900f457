"""NPZ arrays: `data.source: npz` with `x_train`, `y_train` and optionally `x_test`,
`y_test` (names configurable under `data.keys`).

An NPZ is a zip of `.npy` members. Before any array is read, every member's `.npy` header
is checked against the zip's own record of its size, and the arrays to be read against a
memory limit, so that a small file that unpacks to gigabytes (a decompression bomb) is
refused rather than read. Never unpickled: an NPZ holding Python objects is refused.

With `data.streaming` the features stay in the file: `NpzRows` maps an `x` member with
`numpy.memmap` at its data's offset in the zip (`numpy.load` cannot map a member of an
NPZ), a piece of about `PIECE_BYTES` at a time, and lets the mapping go after each piece so
that what it read leaves the process's memory too. Only a member stored as it is can be
mapped: `numpy.savez` writes them so; one written by `numpy.savez_compressed` is a
ConfigError saying so. The targets are read whole. One pass over the features checks them
(numbers, finite in float32) before training, as the in-memory reading does.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy

from dlcli.data.sources.base import (
    Loaded,
    Rows,
    Source,
    check_finite,
    checked_targets,
    float32,
    numeric_features,
)
from dlcli.data.sources.datafile import data_file, machine_memory, sha256_file, streams
from dlcli.errors import ConfigError, Problem, did_you_mean, first_line

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive; an empty archive
NPY_MAGIC = b"\x93NUMPY"
HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
LIMIT_VARIABLE = "DLCLI_MAX_ARRAY_BYTES"
PIECE_BYTES = 4 << 20  # bytes of features `NpzRows` maps and reads at a time
LOCAL_HEADER = struct.Struct(
    "<4s5H3L2H"
)  # a zip member's local header, before its name and extra field


class NpzFile(Source):
    names = ("npz",)

    def load(self, config) -> Loaded:
        d, k = config.data, config.data.keys
        pick = required(
            [k.x_train, k.y_train], (k.x_test, k.y_test), config.where(("data", "path"))
        )
        if streams(config):
            return _streamed(d.path, pick, k)
        arrays = read_npz(d.path, pick)
        x, y = _pair(arrays, k.x_train, k.y_train, d.path)
        if (k.x_test in arrays) != (k.y_test in arrays):
            raise ConfigError(
                Problem(
                    f"the NPZ has only one of {k.x_test} / {k.y_test}; add both or neither",
                    where=d.path,
                )
            )
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
    header: int = 0  # bytes of the .npy header before the array's data
    fortran: bool = False


def required(
    keys: list[str], optional: tuple = (), where: str = ""
) -> Callable[[list[str]], list[str]]:
    """A `pick` for `read_npz`: `keys` (a missing one is a ConfigError at `where` naming the
    arrays there) and the `optional` ones present."""

    def pick(present: list[str]) -> list[str]:
        missing = [k for k in keys if k not in present]
        if missing:
            raise ConfigError(
                Problem(
                    f"no array '{missing[0]}' in the NPZ{did_you_mean(missing[0], present)}; it holds: "
                    f"{', '.join(present) or 'nothing'} (set data.keys to name them)",
                    where=where,
                )
            )
        return [k for k in [*keys, *optional] if k in present]

    return pick


def read_npz(path: str, pick: Callable[[list[str]], list[str]] | None = None) -> dict:
    """The arrays `pick(names present)` chooses (every one by default) from an NPZ file.

    A ConfigError naming the file for anything but a regular zip of numeric or text `.npy`
    arrays whose headers match their sizes, or arrays larger than `max_array_bytes()`.
    """
    with _archive(path) as (archive, members):
        names = pick(list(members)) if pick else list(members)
        _check_size(path, [(name, members[name]) for name in names])
        return {name: _read(archive, members[name]) for name in names}


@contextlib.contextmanager
def _archive(path: str):
    """(the open zip, its members) of an NPZ file; a ConfigError naming the file for
    anything zip, the OS or numpy raise while it is open."""
    data_file(path)
    _check_magic(path)
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive, _members(archive, path)
    except (ConfigError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - zip, OS and numpy errors alike
        raise ConfigError(
            Problem(
                f"not a readable NPZ file ({type(exc).__name__}: {first_line(exc)[:200]}); save it again with numpy.savez",
                where=path,
            )
        ) from None


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
            raise ConfigError(
                Problem(
                    f"must be a number of bytes, such as 8000000000, not {text!r}",
                    where=LIMIT_VARIABLE,
                )
            )
        return limit
    return machine_memory() // 2


def _check_magic(path: str) -> None:
    """Refuse a file that does not start as a zip archive (an NPZ is one)."""
    with open(path, "rb") as handle:
        start = handle.read(len(NPY_MAGIC))
    if start.startswith(NPY_MAGIC):
        raise ConfigError(
            Problem(
                "is a single .npy array, not an NPZ (zip) file; save the arrays with numpy.savez(path, x_train=..., y_train=...)",
                where=path,
            )
        )
    if not start.startswith(ZIP_MAGIC):
        raise ConfigError(
            Problem(
                "is not an NPZ (zip) file; save the arrays with numpy.savez(path, x_train=..., y_train=...)",
                where=path,
            )
        )


def _members(archive: zipfile.ZipFile, path: str) -> dict[str, Member]:
    """Every `.npy` member by array name, from its header alone (no array data is read)."""
    members = {}
    for info in archive.infolist():
        if info.is_dir() or not info.filename.endswith(".npy"):
            continue
        name = info.filename[: -len(".npy")]
        with archive.open(info) as handle:
            version = npy.read_magic(handle)
            if version not in HEADER_READERS:
                raise ConfigError(
                    Problem(
                        f"array '{name}' is in .npy format {version[0]}.{version[1]}, which dlcli does not read; "
                        "save it with numpy.savez",
                        where=path,
                    )
                )
            shape, fortran, dtype = HEADER_READERS[version](handle)
            header = handle.tell()
        if dtype.hasobject:
            raise ConfigError(
                Problem(
                    f"not a usable NPZ file: array '{name}' holds Python objects, which dlcli never unpickles; "
                    "save numbers or text",
                    where=path,
                )
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if header + nbytes != info.file_size:
            raise ConfigError(
                Problem(
                    f"array '{name}' declares {nbytes:,} bytes ({dtype} {shape}) but its zip member holds "
                    f"{info.file_size - header:,}; the file is damaged or forged, save it again with numpy.savez",
                    where=path,
                )
            )
        members[name] = Member(info, shape, dtype, nbytes, header, bool(fortran))
    return members


def _check_size(path: str, chosen: list[tuple[str, Member]]) -> None:
    """Refuse arrays that would take more memory than `max_array_bytes()` once read."""
    total, limit = sum(m.nbytes for _, m in chosen), max_array_bytes()
    if total <= limit:
        return
    sizes = ", ".join(f"{name} {m.dtype}{list(m.shape)} {m.nbytes:,} bytes" for name, m in chosen)
    origin = (
        f"set by {LIMIT_VARIABLE}"
        if os.environ.get(LIMIT_VARIABLE)
        else f"half this machine's memory; {LIMIT_VARIABLE} sets it"
    )
    raise ConfigError(
        Problem(
            f"its arrays would take {total:,} bytes of memory once unpacked ({sizes}; the file is "
            f"{os.path.getsize(path):,} bytes), over the limit of {limit:,} bytes ({origin}); use a smaller file "
            "or set data.streaming: true (the features are then read in parts; save them with numpy.savez)",
            where=path,
        )
    )


def _read(archive: zipfile.ZipFile, member: Member) -> np.ndarray:
    """One array, read as its (checked) header declares: never unpickled."""
    with archive.open(member.info) as handle:
        return npy.read_array(handle, allow_pickle=False)


def _pair(arrays: dict, x_key: str, y_key: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked features and targets of one split, with as many samples each."""
    x = numeric_features(arrays[x_key], path, x_key)
    y = checked_targets(arrays[y_key], path, y_key)
    if len(x) != len(y):
        raise ConfigError(
            Problem(f"{x_key} has {len(x)} samples but {y_key} has {len(y)}", where=path)
        )
    return x, y


def read_features(path: str) -> np.ndarray:
    """Features for `predict`: the array `x` (or `x_test`, `x_train`, or the only one)."""

    def pick(present: list[str]) -> list[str]:
        key = next((k for k in ("x", "x_test", "x_train") if k in present), None)
        key = key or (present[0] if len(present) == 1 else None)
        if key is None:
            raise ConfigError(
                Problem(
                    f"name the features array 'x' (it holds: {', '.join(present) or 'nothing'})",
                    where=path,
                )
            )
        return [key]

    ((key, x),) = read_npz(path, pick).items()
    return numeric_features(x, path, key)


def read_labeled(path: str, keys) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets for `evaluate --data`: x_test/y_test (or x/y, or x_train/y_train)."""

    def pick(present: list[str]) -> list[str]:
        pairs = ((keys.x_test, keys.y_test), ("x", "y"), (keys.x_train, keys.y_train))
        pair = next(([a, b] for a, b in pairs if a in present and b in present), None)
        if pair is None:
            raise ConfigError(
                Problem(
                    f"expected arrays x_test and y_test (or x and y); it holds: {', '.join(present)}",
                    where=path,
                )
            )
        return pair

    arrays = read_npz(path, pick)
    return _pair(arrays, *pick(list(arrays)), path)


# ---------------------------------------------------------------- data.streaming


class NpzRows(Rows):
    """An `x` array of an NPZ, stored uncompressed, mapped a piece of rows at a time."""

    def __init__(self, path: str, name: str, member: Member, offset: int):
        self.path, self.name, self.member, self.offset = path, name, member, offset
        shape = member.shape
        self.sample_shape = tuple(shape[1:]) or (1,)
        row_bytes = max(1, math.prod(shape[1:]) * member.dtype.itemsize)
        self.starts = np.append(
            np.arange(0, shape[0], max(1, PIECE_BYTES // row_bytes)), shape[0]
        ).astype("int64")

    def raw(self, piece: int) -> np.ndarray:
        """Piece `piece` as stored (a copy: the mapping is closed on return)."""
        start, stop = int(self.starts[piece]), int(self.starts[piece + 1])
        m = self.member
        mapped = np.memmap(
            self.path,
            dtype=m.dtype,
            mode="r",
            offset=self.offset,
            shape=m.shape,
            order="F" if m.fortran else "C",
        )
        try:
            return np.array(mapped[start:stop])
        finally:
            del mapped

    def read(self, piece: int) -> np.ndarray:
        block = float32(self.raw(piece))
        return block.reshape((len(block), *self.sample_shape))

    def check(self) -> None:
        """One pass: every number finite in float32 (a ConfigError naming the first sample
        that is not, as `numeric_features` does)."""
        for piece in range(self.pieces):
            raw = self.raw(piece)
            check_finite(
                float32(raw).reshape(len(raw), -1),
                raw,
                self.path,
                self.name,
                int(self.starts[piece]),
            )


def _streamed(path: str, pick, keys) -> Loaded:
    """The NPZ with its features mapped (`NpzRows`) and its targets read."""
    with _archive(path) as (archive, members):
        names = pick(list(members))
        if (keys.x_test in names) != (keys.y_test in names):
            raise ConfigError(
                Problem(
                    f"the NPZ has only one of {keys.x_test} / {keys.y_test}; add both or neither",
                    where=path,
                )
            )
        ys = [key for key in (keys.y_train, keys.y_test) if key in names]
        _check_size(path, [(key, members[key]) for key in ys])
        targets = {key: _read(archive, members[key]) for key in ys}
    pairs = [(keys.x_train, keys.y_train)] + (
        [(keys.x_test, keys.y_test)] if keys.x_test in names else []
    )
    split = []
    for x_key, y_key in pairs:
        x = _mapped(path, x_key, members[x_key])
        y = checked_targets(targets[y_key], path, y_key)
        if len(x) != len(y):
            raise ConfigError(
                Problem(f"{x_key} has {len(x)} samples but {y_key} has {len(y)}", where=path)
            )
        x.check()
        split += [x, y]
    x, y, x_test, y_test = split + [None] * (4 - len(split))
    return Loaded(x=x, y=y, x_test=x_test, y_test=y_test, files={path: sha256_file(path)})


def _mapped(path: str, name: str, member: Member) -> NpzRows:
    """An `x` member as `NpzRows`; a ConfigError for one that cannot be features or mapped."""
    numeric_features(
        np.zeros((1, *member.shape[1:]) if member.shape else (), dtype=member.dtype), path, name
    )
    if member.info.compress_type != zipfile.ZIP_STORED:
        raise ConfigError(
            Problem(
                f"array '{name}' is compressed (numpy.savez_compressed), so data.streaming cannot map it; save the "
                "arrays with numpy.savez, or set data.streaming: false",
                where=path,
            )
        )
    with open(path, "rb") as handle:
        handle.seek(member.info.header_offset)
        local = LOCAL_HEADER.unpack(handle.read(LOCAL_HEADER.size))
    name_length, extra_length = local[-2], local[-1]
    offset = (
        member.info.header_offset + LOCAL_HEADER.size + name_length + extra_length + member.header
    )
    return NpzRows(path, name, member, offset)
