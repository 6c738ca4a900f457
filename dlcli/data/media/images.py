"""Image files decoded once, checked, and held as rows that training reads a piece at a
time (`dlcli.data.media.store`).

Each file's header is checked (a format dlcli reads, a size that cannot exhaust memory), and
the file decoded and resized by Keras's own `keras.utils.load_img` (PIL, bilinear) into
`uint8` pixels. Every file that fails is found in that one pass, before training: the first
is named with the count of the others, or, with `on_bad_file: skip`, all of them are listed.

Example:
    >>> decoded = decode_files(files, (64, 64), "rgb")
    >>> decoded.rows.sample_shape, len(decoded.rows)
    ((64, 64, 3), 240)
"""

from __future__ import annotations

import io
import os
import re
import warnings

import numpy as np

from dlcli.data.media import store
from dlcli.data.media.store import PIECE, BadFile, Decoded, manifest, reason
from dlcli.errors import ConfigError, Problem

CHANNELS = {"rgb": 3, "grayscale": 1, "rgba": 4}
FORMATS = {"PNG", "JPEG", "MPO", "BMP", "GIF"}  # what PIL calls the formats dlcli reads
MAX_PIXELS = 89_478_485  # PIL's own bound (Image.MAX_IMAGE_PIXELS): about 0.25 GiB per channel


class BadImage(BadFile):
    """Why a file is not an image dlcli can use (one phrase)."""


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
        raise BadImage(f"is not an image PIL can read ({reason(exc)})") from None
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
        raise BadImage(f"cannot be decoded ({reason(exc)})") from None
    return pixels.reshape((*size, CHANNELS[color_mode]))


def decode_files(
    files: list[str], size: tuple[int, int], color_mode: str, others: dict | None = None
) -> Decoded:
    """Decode every file of `files` into `uint8` rows of `(*size, channels)`; the files
    that fail are in `Decoded.bad` (with `others`, files already known to be unusable)."""
    # PIL warns about what it converts (a palette with transparency becoming RGB): the
    # pixels are what the config asks for, and a warning per file would flood stderr.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    return store.decode_files(
        files,
        lambda data: decode(data, size, color_mode),
        (*size, CHANNELS[color_mode]),
        "uint8",
        BadImage,
        "images",
        others,
    )


def read_bytes(path: str) -> bytes:
    """A file's bytes; BadImage for what is not a regular file, is too large, or cannot be read."""
    return store.read_bytes(path, "image", BadImage)


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
    "PIECE",
    "BadImage",
    "Decoded",
    "common_size",
    "decode",
    "decode_files",
    "header",
    "manifest",
]
