"""pyarrow columns as numpy: numbers, and text columns as distinct cells plus per-row codes.

Every reader of `tables` turns the columns pyarrow parsed into numpy the same way: a column
of numbers into one array (null cells as NaN), a column of text (dictionary-encoded) into its
distinct cells, trimmed, and each row's index into them, a null cell as one past the last.
These helpers read pyarrow's buffers directly: pyarrow's own `to_numpy` imports pandas when
it is installed (0.3 s).

pyarrow is imported inside the functions. Imports no other module of `tables`.
"""

from __future__ import annotations

import numpy as np


def text_type():
    """The pyarrow type text columns are read as: a dictionary of strings."""
    import pyarrow as pa

    return pa.dictionary(pa.int32(), pa.string())


def is_text(column) -> bool:
    """Whether a pyarrow column was read as text (a dictionary), not as numbers."""
    import pyarrow as pa

    return pa.types.is_dictionary(column.type)


def to_numpy(array, fill) -> np.ndarray:
    """A pyarrow array of numbers as a numpy array (null cells as `fill`), read from its buffer."""
    import pyarrow as pa

    if array.null_count and isinstance(fill, float) and not pa.types.is_floating(array.type):
        array = array.cast(pa.float64())  # whole numbers with a gap: NaN needs a float
    if array.null_count:
        array = array.fill_null(fill)
    kind = array.type
    if pa.types.is_floating(kind) and kind.bit_width in (32, 64):
        dtype = f"float{kind.bit_width}"
    elif pa.types.is_integer(kind):
        dtype = f"{'int' if pa.types.is_signed_integer(kind) else 'uint'}{kind.bit_width}"
    else:  # booleans (bits), decimals, half floats
        array, dtype = array.cast(pa.float64()), "float64"
    size = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * size
    )


def numbers(column, dtype: str) -> np.ndarray:
    """A column of numbers as one numpy array of `dtype` (null cells as NaN)."""
    import pyarrow as pa

    if dtype == "float64":
        column = column.cast(pa.float64())
    with np.errstate(over="ignore"):  # 1e39 is inf in float32, as in the matrix read whole
        parts = [to_numpy(chunk, np.nan).astype(dtype, copy=False) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def as_text(column):
    """A column (of numbers, or of plain strings) as text with one dictionary."""
    import pyarrow as pa

    return (
        pa.table({"c": column.cast(pa.string()).dictionary_encode()}).unify_dictionaries().column(0)
    )


def unified(column):
    """A dictionary column with one dictionary for all its chunks."""
    import pyarrow as pa

    return (
        pa.table({"c": column}).unify_dictionaries().column(0) if column.num_chunks > 1 else column
    )


def dictionary_cells(column) -> list[str]:
    """A dictionary column's values (one dictionary: `unified`) as trimmed text."""
    values = column.chunk(0).dictionary.to_pylist() if column.num_chunks else []
    return [v.strip() if isinstance(v, str) else ("" if v is None else str(v)) for v in values]


def chunk_codes(column, size: int):
    """Each chunk's dictionary indices as a numpy array, a null cell as `size`."""
    for chunk in column.chunks:
        yield to_numpy(chunk.indices, size)


def codes(column, size: int) -> np.ndarray:
    """`chunk_codes` as one array."""
    parts = list(chunk_codes(column, size))
    return np.concatenate(parts) if parts else np.zeros(0, dtype="int64")


def first_row(column, odd: np.ndarray) -> int:
    """The first row whose code `odd` (a mask over the codes) marks; 0 if none."""
    start = 0
    for indices in chunk_codes(column, len(odd) - 1):
        hits = np.flatnonzero(odd[indices])
        if len(hits):
            return start + int(hits[0])
        start += len(indices)
    return 0


def code_at(column, row: int) -> int:
    """The dictionary index of `row` in a dictionary column."""
    start = 0
    for chunk in column.chunks:
        if row < start + len(chunk):
            return int(chunk.indices[row - start].as_py())
        start += len(chunk)
    raise IndexError(row)


def longest(strings) -> int:
    """The most characters of one string of a pyarrow array of strings."""
    import pyarrow.compute as pc

    if len(strings) == 0:
        return 0
    return int(pc.max(pc.utf8_length(strings)).as_py() or 0)
