"""Image files decoded once, checked, and held as `ImageRows` that training reads a piece
at a time.

Each file is read once (its SHA-256 taken from the same bytes), its header checked (a format
dlcli reads, a size that cannot exhaust memory), and decoded and resized by Keras's own
`keras.utils.load_img` (PIL, bilinear) into `uint8` pixels, on a few threads at once (PIL lets
go of the GIL while it decodes). The pixels go to an unnamed temporary file, which the system
removes when the process ends however it ends, never into memory: memory then depends on a
batch, not on the number of images, and each epoch after the first reads pixels (from the
system's file cache) instead of decoding again, as `tf.data`'s `cache()` would, without
holding them. Every file that fails is found in that one pass, before training: the first is
named with the count of the others, or, with `on_bad_file: skip`, all of them are listed.

Example:
    >>> decoded = decode_files(files, (64, 64), "rgb", "error")
    >>> decoded.rows.sample_shape, len(decoded.rows)
    ((64, 64, 3), 240)
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from dlcli.data.sources.base import Rows
from dlcli.errors import ConfigError, Problem

CHANNELS = {"rgb": 3, "grayscale": 1, "rgba": 4}
FORMATS = {"PNG", "JPEG", "MPO", "BMP", "GIF"}  # what PIL calls the formats dlcli reads
MAX_PIXELS = 89_478_485  # PIL's own bound (Image.MAX_IMAGE_PIXELS): about 0.25 GiB per channel
MAX_FILE_BYTES = 512 << 20  # an image file larger than this is not read into memory
PIECE = 32  # images per piece of `ImageRows`: the unit a shuffled epoch permutes
CHUNK = 64  # images a decoding thread takes at a time


class BadImage(Exception):
    """Why a file is not an image dlcli can use (one phrase)."""


def threads() -> int:
    """Decoding threads: the cores this process may use, at most 8."""
    from dlcli.runtime.devices import usable_cores

    return max(1, min(8, len(usable_cores())))


def read_bytes(path: str) -> bytes:
    """A file's bytes; BadImage for what is not a regular file, is too large, or cannot be read."""
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise BadImage("is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise BadImage(
                    f"is {info.st_size >> 20} MiB, larger than any image dlcli reads "
                    f"({MAX_FILE_BYTES >> 20} MiB)"
                )
            return handle.read()
    except OSError as exc:
        raise BadImage(f"cannot be read ({exc.strerror or exc})") from None


def header(data: bytes) -> tuple[int, int, str, str]:
    """(width, height, format, PIL mode) from an image's header, nothing decoded; BadImage for a file
    that is not a PNG, JPEG, BMP or GIF, or whose declared size would exhaust memory."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            kind, mode = image.format, image.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if not data:
            raise BadImage("is empty") from None
        raise BadImage(f"is not an image PIL can read ({_reason(exc)})") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(_bomb(None, None, str(exc))) from None
    if kind not in FORMATS:
        raise BadImage(f"is a {kind} image; dlcli reads PNG, JPEG, BMP and GIF")
    if width * height > MAX_PIXELS:
        raise BadImage(_bomb(width, height))
    return width, height, "JPEG" if kind == "MPO" else kind, mode


def _bomb(width, height, said: str = "") -> str:
    """The reason for an image whose header declares too many pixels (PIL's message, when
    PIL refused it first, gives their number)."""
    if width:
        declared = f"declares {width}x{height} pixels"
    else:
        found = re.search(r"\((\d+) pixels\)", said)
        declared = f"declares {int(found[1]):,} pixels" if found else "declares a huge size"
    return (
        f"{declared}, more than the {MAX_PIXELS / 1e6:.0f} million dlcli decodes (a "
        "decompression bomb, or a scan far larger than any model input)"
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n")[0].strip()
    return text[:120] or type(exc).__name__


def decode(data: bytes, size: tuple[int, int], color_mode: str) -> np.ndarray:
    """An image's bytes as `uint8` pixels `(height, width, channels)`, through Keras's
    `load_img` (converted to `color_mode`, resized bilinearly to `size`); BadImage when the
    header is not one dlcli reads or the pixels cannot be decoded (a truncated file)."""
    from keras.utils import load_img
    from PIL import Image

    header(data)
    try:
        image = load_img(
            io.BytesIO(data), color_mode=color_mode, target_size=size, interpolation="bilinear"
        )
        if color_mode == "grayscale" and image.mode != "L":  # 16- or 32-bit grayscale
            image = image.convert("L")
        pixels = np.asarray(image, dtype="uint8")
    except Image.DecompressionBombError as exc:
        raise BadImage(_bomb(None, None, str(exc))) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"cannot be decoded ({_reason(exc)})") from None
    return pixels.reshape((*size, CHANNELS[color_mode]))


class ImageRows(Rows):
    """Decoded images in a file, `PIECE` to a piece: `read(piece)` gives them as `uint8`
    `(rows, height, width, channels)`. Row `i` is at slot `slots[i]` of the file (a skipped
    file leaves its slot empty)."""

    dtype = "uint8"

    def __init__(self, handle, slots: np.ndarray, shape: tuple):
        self.handle = handle
        self.slots = slots
        self.sample_shape = tuple(shape)
        self.bytes = int(math.prod(shape))
        count = len(slots)
        self.starts = np.append(np.arange(0, count, PIECE, dtype="int64"), count)
        if count == 0:
            self.starts = np.zeros(1, dtype="int64")

    def read(self, piece: int) -> np.ndarray:
        slots = self.slots[self.starts[piece] : self.starts[piece + 1]]
        low, high = int(slots[0]), int(slots[-1]) + 1
        buffer = np.empty((high - low) * self.bytes, dtype="uint8")
        view, at = memoryview(buffer), 0
        while at < len(buffer):  # pread may return less than asked
            done = os.preadv(self.handle.fileno(), [view[at:]], low * self.bytes + at)
            if done <= 0:
                raise OSError(f"the decoded images' file ended at slot {low + at // self.bytes}")
            at += done
        images = buffer.reshape((high - low, *self.sample_shape))
        return images if high - low == len(slots) else images[slots - low]


@dataclass
class Decoded:
    """What decoding a list of files gave: the rows, each kept file's position in the list,
    the SHA-256 of every file read, and the files that failed (path -> why)."""

    rows: ImageRows
    kept: np.ndarray
    digests: dict[str, str]
    bad: dict[str, str] = field(default_factory=dict)


def decode_files(
    files: list[str], size: tuple[int, int], color_mode: str, others: dict | None = None
) -> Decoded:
    """Decode every file of `files` into an `ImageRows` (see the module's docstring); the
    files that fail are in `Decoded.bad` (with `others`, files already known to be unusable),
    for the caller to refuse or skip. A ConfigError when the temporary file cannot be made."""
    channels = CHANNELS[color_mode]
    sample = size[0] * size[1] * channels
    # PIL warns about what it converts (a palette with transparency becoming RGB): the
    # pixels are what the config asks for, and a warning per file would flood stderr.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    try:
        handle = tempfile.TemporaryFile(prefix="dlcli-images-")  # noqa: SIM115 - ImageRows holds it
    except OSError as exc:
        raise ConfigError(
            Problem(
                f"no temporary file for the decoded images ({exc.strerror}); free space in "
                "the system's temporary folder (or point TMPDIR at one with room)",
                where="data.path",
            )
        ) from None
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
                data = read_bytes(path)
                found[path] = hashlib.sha256(data).hexdigest()
                pixels = decode(data, size, color_mode)
            except BadImage as exc:
                failed[path] = str(exc)
                continue
            try:
                os.pwrite(fd, pixels.tobytes(), i * sample)
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
        raise ConfigError(
            Problem(
                f"the decoded images do not fit in the system's temporary folder "
                f"({failure[0].strerror}); free space there or point TMPDIR at a folder with room",
                where="data.path",
            )
        )
    kept = np.flatnonzero(ok)
    return Decoded(ImageRows(handle, kept, (*size, channels)), kept, digests, bad)


def manifest(root, digests: dict[str, str]) -> str:
    """One SHA-256 for a folder's files: each file's path (relative to `root`) and SHA-256."""
    whole = hashlib.sha256()
    for path in sorted(digests, key=lambda p: os.path.relpath(p, root)):
        whole.update(f"{os.path.relpath(path, root)}\0{digests[path]}\n".encode())
    return whole.hexdigest()


def common_size(files: list[str], where: str) -> tuple[int, int]:
    """(height, width) shared by the images of `files` (headers only); a ConfigError at
    `where` (data.image_size's line) when they differ, naming the sizes found."""
    sizes: dict[tuple[int, int], str] = {}
    for path in files:
        try:
            width, height, _, _ = header(read_head(path))
        except BadImage:
            continue  # decoding names it
        sizes.setdefault((height, width), path)
        if len(sizes) > 1:
            break
    if len(sizes) != 1:
        if not sizes:
            return (0, 0)
        shown = ", ".join(f"{w}x{h} ({os.path.basename(p)})" for (h, w), p in sizes.items())
        raise ConfigError(
            Problem(
                f"the images differ in size ({shown}, ...); set data.image_size: [height, width] "
                "to resize them all to one",
                where=where,
            )
        )
    return next(iter(sizes))


def read_head(path: str, size: int = 1 << 16) -> bytes:
    """The first `size` bytes of a file (enough for any header dlcli reads)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


__all__ = [
    "CHANNELS",
    "BadImage",
    "Decoded",
    "ImageRows",
    "common_size",
    "decode",
    "decode_files",
    "header",
    "manifest",
]
