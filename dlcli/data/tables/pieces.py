"""A CSV in pieces: where a piece may end, and one piece parsed by pyarrow.

Reading whole and streaming both parse a CSV `PIECE` bytes at a time, with this one reader:
`spans` cuts the file after a line end outside quoted cells (`\\n`, `\\r\\n` or `\\r`),
`read_piece` parses one piece with pyarrow's threads into the wanted columns, numbers as
float32 / float64 and text as dictionaries. A column asked for as numbers that holds a cell
that is not one raises `ReadAsText` (the caller reads it again as text); any other problem
is a ConfigError at its line (`diagnostics`). `releaser` hands the memory of a parsed piece
back to the system once it is let go.

One piece size for both, `PIECE`, measured on 64-column files: reading whole holds its matrix
plus about one parsed piece, at 200,000 rows a peak of 1.7x the arrays with 2 MiB pieces, 2.0x
with 4 MiB, 2.6x with 8 MiB (benchmarks/bench_tables.py's gate: 2x); streaming 1,000,000 rows
with 2 MiB pieces peaks at half what 8 MiB pieces took (50 MB against 98 MB over the
imports), for the same scan time and an epoch of reads within the noise (2.2-2.6 s, 2.1 s).

pyarrow is imported inside the functions. Imports `form`, `arrow` and `diagnostics` of `tables`.
"""

from __future__ import annotations

import csv
import re

import numpy as np

from dlcli.data.tables.arrow import is_text, longest
from dlcli.data.tables.diagnostics import diagnose
from dlcli.data.tables.form import SPACES, TableFormat, lead_bytes, line_ends
from dlcli.errors import ConfigError, Problem

PIECE = 2 << 20  # bytes of a CSV parsed at a time, whole or streamed (see above)
BLOCK = 1 << 20  # bytes pyarrow parses per block (per thread)
CELL_LIMIT = csv.field_size_limit()  # characters in one cell (131,072): a label, not a document


class ReadAsText(Exception):
    """A column read as numbers holds a cell that is not one: read it again as text."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def spans(path: str, fmt: TableFormat, size: int | None = None):
    """(byte offset, bytes) of each piece of a CSV: about `size` (default `PIECE`) bytes cut
    after a line end outside quoted cells; pieces of blank lines only are left out. The first
    starts after the `fmt.skip_rows` leading lines and holds the header, if any. Streaming
    reads a piece again from its offset (`read_span`)."""
    size = size or PIECE
    carry, start = b"", lead_bytes(path, fmt.skip_rows) if fmt.skip_rows else 0
    with open(path, "rb") as handle:
        handle.seek(start)
        for block in iter(lambda: handle.read(size), b""):
            data = carry + block
            cut = _cut(data, fmt.quotes_span_lines)
            if cut == 0:
                carry = data
                continue
            piece, carry = data[:cut], data[cut:]
            if piece.strip():
                yield start, piece
            start += cut
    if carry.strip():
        yield start, carry


def read_span(path: str, offset: int, size: int) -> bytes:
    """The `size` bytes at `offset`: a piece `spans` gave, read again."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(size)
    except OSError as exc:
        raise ConfigError(
            Problem(f"cannot read the data file: {exc.strerror or exc}", where=path)
        ) from None


def read_piece(
    source, first: bool, path: str, fmt: TableFormat, wanted: list[str], types: dict, markers
):
    """One piece (bytes from `spans`, or the path of the whole file) parsed into a pyarrow
    table of the `wanted` columns, each of the type `types` gives it (numbers or
    `arrow.text_type()`); cells equal to a marker, give or take spaces, are null. The
    header is skipped in the `first` piece, and the `fmt.skip_rows` leading lines before it
    when `source` is the whole file (a piece of `spans` starts after them)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if fmt.delimiter == SPACES and isinstance(source, bytes):
        source = tabbed(source)
    lead = fmt.skip_rows if not isinstance(source, bytes) else 0
    read = pcsv.ReadOptions(
        column_names=fmt.names,
        skip_rows=(lead + (1 if fmt.header else 0)) if first else 0,
        block_size=BLOCK,
    )
    parse = pcsv.ParseOptions(
        delimiter="\t" if fmt.delimiter == SPACES else fmt.delimiter,
        quote_char='"' if fmt.delimiter != SPACES else False,
        newlines_in_values=fmt.quotes_span_lines,
        ignore_empty_lines=True,
    )
    nulls = sorted({variant for m in markers for variant in (m, f" {m}", f"{m} ", f" {m} ")})
    convert = pcsv.ConvertOptions(
        column_types=types,
        include_columns=wanted,
        null_values=nulls,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        decimal_point=fmt.decimal,
        check_utf8=True,
    )
    try:
        data = pa.BufferReader(source) if isinstance(source, bytes) else source
        table = pcsv.read_csv(data, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        found = re.search(r"In CSV column #(\d+): CSV conversion error to (float|double)", str(exc))
        name = fmt.names[int(found[1])] if found and int(found[1]) < len(fmt.names) else None
        if name is not None and pa.types.is_floating(types.get(name)):
            raise ReadAsText(name) from None
        raise diagnose(path, fmt, exc) from None
    except (OSError, pa.ArrowException) as exc:
        raise diagnose(path, fmt, exc) from None
    for name in wanted:  # a cell longer than Python's csv takes is a quote never closed
        column = table.column(name)
        if is_text(column) and column.num_chunks:
            most = max(longest(chunk.dictionary) for chunk in column.chunks)
            if most > CELL_LIMIT:
                raise diagnose(
                    path, fmt, ValueError(f"a cell of column '{name}' has {most:,} characters")
                )
    return table


def tabbed(raw: bytes) -> bytes:
    """Lines aligned with runs of spaces or tabs, as tab-separated cells (pyarrow splits on
    one character). Line by line: a piece cut at line ends gives what the whole file gives."""
    raw = re.sub(rb"(?:^|(?<=[\r\n]))[ \t]+|[ \t]+(?=[\r\n]|\Z)", b"", raw)
    return re.sub(rb"[ \t]+", b"\t", raw)


def releaser():
    """A function that hands pyarrow's freed memory back to the system: without it the
    allocator keeps every parsed piece, and the peak is the table plus the matrix."""
    import pyarrow as pa

    return pa.default_memory_pool().release_unused


def _cut(data: bytes, quoted: bool) -> int:
    """Where a piece of `data` may end: after its last line end that is not inside a quoted
    cell (0 if none). A piece starts outside quotes, and a CSV writes a quote inside a quoted
    cell twice, so an odd count of quotes before a line end means the line end is quoted."""
    if b"\r" not in data and (not quoted or b'"' not in data):
        return data.rfind(b"\n") + 1
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = line_ends(raw)
    if not len(ends):
        return 0
    if quoted:
        ends = ends[np.cumsum(raw == 34)[ends] % 2 == 0]
    return int(ends[-1]) + 1 if len(ends) else 0
