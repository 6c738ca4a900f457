"""Text documents read once, checked, and held as `TextRows` that training reads a piece at
a time, each piece turned into token ids (or a vector per document) by the run's
`TextVectorization` (`dlcli.data.media.vocabulary`).

A document is a UTF-8 `.txt` file (a byte-order mark is dropped) or a table cell. Each file is
read once, its SHA-256 taken from the same bytes, and its text written to an unnamed
temporary file: memory holds one offset per document, not the documents. A file that is not
UTF-8 is named with the byte offset of the first bad byte; one that holds NUL bytes is a
binary file, not text.

Example:
    >>> decoded = read_text_files(files)
    >>> decoded.rows.texts(0)[:1]
    array(['A fine film, ...'], dtype=object)
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from dlcli.data.media import store
from dlcli.data.media.listing import TEXT_SUFFIXES
from dlcli.data.media.store import BadFile, Decoded
from dlcli.data.sources.base import Rows

PIECE = 256  # documents per piece: the unit a shuffled epoch permutes
CACHE_BYTES = 1 << 30  # vectors up to this size are made once, not every epoch


class BadText(BadFile):
    """Why a file is not a text dlcli can use (one phrase)."""


def decode_text(data: bytes) -> str:
    """A file's bytes as text; BadText for bytes that are not UTF-8 or hold NUL bytes."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadText(
            f"is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as "
            "UTF-8 (iconv -f latin1 -t utf-8, or your editor's 'save with encoding')"
        ) from None
    if "\0" in text:
        at = data.index(b"\0")
        raise BadText(f"holds a NUL byte at offset {at}: a binary file, not text")
    return text


class TextRows(Rows):
    """Documents in a file, `PIECE` to a piece. `texts(piece)` gives them as str; `read(piece)`
    as the model's input once `vectorize` is set (the run's vectorizer)."""

    def __init__(self, handle, offsets: np.ndarray):
        self.handle = handle
        self.offsets = offsets  # document i is bytes offsets[i]:offsets[i + 1]
        count = len(offsets) - 1
        self.starts = np.append(np.arange(0, count, PIECE, dtype="int64"), count)
        if count == 0:
            self.starts = np.zeros(1, dtype="int64")
        self.text = None  # the TextPreprocessing that `read` vectorizes with
        self.vectors = None  # (file, bytes per document) of the documents vectorized once

    def use(self, text, cache_bytes: int = CACHE_BYTES) -> None:
        """Vectorize with `text` (a TextPreprocessing) from now on: all documents at once
        into a second unnamed file when their vectors take at most `cache_bytes` (token ids
        always, as `tf.data`'s `cache()` would hold them), so that no epoch vectorizes again;
        else a piece at a time as training reads it."""
        self.text = text
        self.sample_shape = text.sample_shape
        self.dtype = text.dtype
        self.vectors = None
        per_row = int(np.prod(self.sample_shape)) * np.dtype(self.dtype).itemsize
        if per_row * len(self) > cache_bytes:
            return
        handle = store.temporary("token ids")
        try:
            for piece in range(self.pieces):
                values = np.ascontiguousarray(text.vectorize(self.texts(piece)))
                os.pwrite(handle.fileno(), values.tobytes(), int(self.starts[piece]) * per_row)
        except OSError as exc:
            handle.close()
            raise store.full("token ids", exc) from None
        self.vectors = (handle, per_row)

    def _vectors(self, piece: int) -> np.ndarray:
        handle, per_row = self.vectors
        low, high = int(self.starts[piece]), int(self.starts[piece + 1])
        data = store.pread(handle, (high - low) * per_row, low * per_row)
        return data.view(self.dtype).reshape((high - low, *self.sample_shape))

    def texts(self, piece: int) -> np.ndarray:
        low, high = int(self.starts[piece]), int(self.starts[piece + 1])
        first, last = int(self.offsets[low]), int(self.offsets[high])
        data = store.pread(self.handle, last - first, first).tobytes()
        bounds = self.offsets[low : high + 1] - first
        return np.array(
            [data[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(high - low)],
            dtype=object,
        )

    def read(self, piece: int) -> np.ndarray:
        if self.vectors is not None:
            return self._vectors(piece)
        return self.text.vectorize(self.texts(piece))

    def read_rows(self, piece: int, local: np.ndarray) -> np.ndarray:
        if self.vectors is not None:
            return self._vectors(piece)[local]
        return self.text.vectorize(self.texts(piece)[local])


def text_rows(texts, what: str = "documents") -> TextRows:
    """`texts` (an iterable of str) in an unnamed temporary file."""
    handle = store.temporary(what)
    offsets = [0]
    try:
        for text in texts:
            data = text.encode("utf-8")
            handle.write(data)
            offsets.append(offsets[-1] + len(data))
        handle.flush()
    except OSError as exc:
        handle.close()
        raise store.full(what, exc) from None
    return TextRows(handle, np.asarray(offsets, dtype="int64"))


def read_text_files(files: list[str], others: dict | None = None) -> Decoded:
    """Read every file of `files` as a document; the files that fail are in `Decoded.bad`
    (with `others`, files already known to be unusable), for the caller to refuse or skip."""
    bad: dict[str, str] = dict(others or {})
    digests: dict[str, str] = {}
    kept: list[int] = []

    def documents():
        for i, path in enumerate(files):
            if path in bad:
                continue
            try:
                data = store.read_bytes(path, "text", BadText)
                digests[path] = hashlib.sha256(data).hexdigest()
                text = decode_text(data)
            except BadText as exc:
                bad[path] = str(exc)
                continue
            kept.append(i)
            yield text

    rows = text_rows(documents())
    return Decoded(rows, np.asarray(kept, dtype="int64"), digests, bad)


__all__ = ["TEXT_SUFFIXES", "BadText", "TextRows", "decode_text", "read_text_files", "text_rows"]
