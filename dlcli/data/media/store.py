"""Media files decoded once, into an unnamed temporary file that training reads a piece at
a time: what images and recordings share.

Each file is read once (its SHA-256 taken from the same bytes) and decoded by the kind's own
function into a sample of one fixed shape (pixels, a waveform), on a few threads at once (the
decoders let go of the GIL). The samples go to an unnamed temporary file, which the system
removes when the process ends however it ends, never into memory: memory then depends on a
batch, not on the number of files, and each epoch after the first reads samples (from the
system's file cache) instead of decoding again, as `tf.data`'s `cache()` would, without
holding them. Every file that fails is found in that one pass, before training.

Example:
    >>> decoded = decode_files(files, lambda data: pixels(data), (64, 64, 3), "uint8", BadImage)
    >>> decoded.rows.sample_shape, len(decoded.rows)
    ((64, 64, 3), 240)
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from dlcli.data.sources.base import Rows
from dlcli.errors import ConfigError, Problem

PIECE = 32  # samples per piece of `FixedRows`: the unit a shuffled epoch permutes
CHUNK = 64  # files a decoding thread takes at a time
MAX_FILE_BYTES = 512 << 20  # a media file larger than this is not read into memory


class BadFile(Exception):
    """Why a file is not one dlcli can use (one phrase); each kind has its own subclass."""


def threads() -> int:
    """Decoding threads: the cores this process may use, at most 8."""
    from dlcli.runtime.devices import usable_cores

    return max(1, min(8, len(usable_cores())))


def read_bytes(path: str, kind: str = "media", bad: type[BadFile] = BadFile) -> bytes:
    """A file's bytes; `bad` for what is not a regular file, is too large, or cannot be read."""
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise bad("is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise bad(
                    f"is {info.st_size >> 20} MiB, larger than any {kind} file dlcli reads "
                    f"({MAX_FILE_BYTES >> 20} MiB)"
                )
            return handle.read()
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})") from None


def temporary(what: str):
    """An unnamed temporary file for decoded `what`; a ConfigError when none can be made."""
    try:
        return tempfile.TemporaryFile(prefix="dlcli-media-")
    except OSError as exc:
        raise ConfigError(
            Problem(
                f"no temporary file for the decoded {what} ({exc.strerror}); free space in "
                "the system's temporary folder (or point TMPDIR at one with room)",
                where="data.path",
            )
        ) from None


def full(what: str, exc: OSError) -> ConfigError:
    return ConfigError(
        Problem(
            f"the decoded {what} do not fit in the system's temporary folder ({exc.strerror}); "
            "free space there or point TMPDIR at a folder with room",
            where="data.path",
        )
    )


def pread(handle, size: int, offset: int) -> np.ndarray:
    """`size` bytes of `handle` from `offset` (pread may return less than asked)."""
    buffer = np.empty(size, dtype="uint8")
    view, at = memoryview(buffer), 0
    while at < size:
        done = os.preadv(handle.fileno(), [view[at:]], offset + at)
        if done <= 0:
            raise OSError(f"the decoded samples' file ended at byte {offset + at}")
        at += done
    return buffer


class FixedRows(Rows):
    """Decoded samples of one shape in a file, `PIECE` to a piece: `read(piece)` gives them
    as `dtype`, `(rows, *shape)`. Row `i` is at slot `slots[i]` of the file (a skipped file
    leaves its slot empty)."""

    def __init__(self, handle, slots: np.ndarray, shape: tuple, dtype: str):
        self.handle = handle
        self.slots = slots
        self.sample_shape = tuple(shape)
        self.dtype = dtype
        self.bytes = int(math.prod(shape)) * np.dtype(dtype).itemsize
        count = len(slots)
        self.starts = np.append(np.arange(0, count, PIECE, dtype="int64"), count)
        if count == 0:
            self.starts = np.zeros(1, dtype="int64")

    def read(self, piece: int) -> np.ndarray:
        slots = self.slots[self.starts[piece] : self.starts[piece + 1]]
        low, high = int(slots[0]), int(slots[-1]) + 1
        buffer = pread(self.handle, (high - low) * self.bytes, low * self.bytes)
        samples = buffer.view(self.dtype).reshape((high - low, *self.sample_shape))
        return samples if high - low == len(slots) else samples[slots - low]


@dataclass
class Decoded:
    """What decoding a list of files gave: the rows, each kept file's position in the list,
    the SHA-256 of every file read, and the files that failed (path -> why)."""

    rows: Rows
    kept: np.ndarray
    digests: dict[str, str]
    bad: dict[str, str] = field(default_factory=dict)


def decode_files(
    files: list[str],
    decode: Callable[[bytes], np.ndarray],
    shape: tuple,
    dtype: str,
    bad_type: type[BadFile],
    what: str,
    others: dict | None = None,
) -> Decoded:
    """Decode every file of `files` with `decode` (bytes -> a sample of `shape`, or
    `bad_type`) into `FixedRows` (see the module's docstring); the files that fail are in
    `Decoded.bad` (with `others`, files already known to be unusable), for the caller to
    refuse or skip. `what` names the samples in messages ("images")."""
    sample = int(math.prod(shape)) * np.dtype(dtype).itemsize
    handle = temporary(what)
    fd = handle.fileno()
    digests: dict[str, str] = {}
    bad: dict[str, str] = dict(others or {})
    ok = np.zeros(len(files), dtype=bool)
    lock = threading.Lock()
    failure: list[OSError] = []

    def work(first: int) -> None:
        found, failed = {}, {}
        for i in range(first, min(first + CHUNK, len(files))):
            path = files[i]
            if path in bad:
                continue
            try:
                data = read_bytes(path, what, bad_type)
                found[path] = hashlib.sha256(data).hexdigest()
                values = np.ascontiguousarray(decode(data), dtype=dtype)
            except bad_type as exc:
                failed[path] = str(exc)
                continue
            try:
                os.pwrite(fd, values.tobytes(), i * sample)
            except OSError as exc:
                failure.append(exc)
                return
            ok[i] = True
        with lock:
            digests.update(found)
            bad.update(failed)

    pool = ThreadPoolExecutor(threads(), thread_name_prefix="dlcli-decode")
    try:
        for _ in pool.map(work, range(0, len(files), CHUNK)):
            if failure:
                break
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        handle.close()
        raise
    pool.shutdown()
    if failure:
        handle.close()
        raise full(what, failure[0])
    kept = np.flatnonzero(ok)
    return Decoded(FixedRows(handle, kept, shape, dtype), kept, digests, bad)


def manifest(root, digests: dict[str, str]) -> str:
    """One SHA-256 for a folder's files: each file's path (relative to `root`) and SHA-256."""
    whole = hashlib.sha256()
    for path in sorted(digests, key=lambda p: os.path.relpath(p, root)):
        whole.update(f"{os.path.relpath(path, root)}\0{digests[path]}\n".encode())
    return whole.hexdigest()


def reason(exc: BaseException) -> str:
    """An exception's first line, at most 120 characters (a decoder's message)."""
    text = str(exc).split("\n")[0].strip()
    return text[:120] or type(exc).__name__


__all__ = [
    "PIECE",
    "BadFile",
    "Decoded",
    "FixedRows",
    "decode_files",
    "manifest",
    "pread",
    "read_bytes",
    "reason",
    "temporary",
]
