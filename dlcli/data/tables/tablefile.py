"""Tables on disk: CSV and Parquet files read by pyarrow into one float32 matrix.

`inspect` works out a file's form from its first megabyte (`TableFormat`: delimiter among
`, ; tab |` and runs of spaces, a header row or not, the column names, a decimal comma);
`read_table` then reads the columns it is asked for with pyarrow's multi-threaded reader,
straight into a preallocated float32 matrix, one record batch at a time (peak memory about
the matrix plus one parsed copy of it). A column holds numbers (missing cells are NaN) or
categories (the codes of `TableColumns.categories`, NaN for missing): which one is given
(`numeric` / `categorical`) or inferred (`auto`) from the cells, trimmed of spaces, with the
`missing` markers taken out. A column of numbers with a few stray text cells is a
ConfigError naming the first one (`file:line`, column) and both fixes.

pyarrow knows no line numbers: where a problem needs one, the file is walked again with
Python's csv module (`line_of`, `diagnose`), which only ever happens on the way to an error.
Turning categories into a vocabulary fitted on the training split is `dlcli.data.tables.preprocessing`' work.
`data.streaming` (`dlcli.data.tables.stream`) walks a file with the same pieces (`spans`),
the same parsing and the same column plans (`plan_cells`), without ever holding the matrix.

Example:
    >>> fmt = inspect("adult.csv", header="auto", columns=None, delimiter="auto", missing=["?"])
    >>> table = read_table("adult.csv", fmt, ["age", "workclass"], "income", {}, ["?"], "fill")
    >>> table.x.shape, table.kinds
    ((32561, 2), ['numeric', 'categorical'])
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from dlcli.data.sources.base import FLOAT32_MAX
from dlcli.data.sources.datafile import NOT_FOUND, data_file
from dlcli.errors import ConfigError, Problem

MAX_LINE = 16 << 20  # characters in one line: a file with no line breaks is not a table
CELL_LIMIT = csv.field_size_limit()  # characters in one cell (131,072): a label, not a document
SAMPLE_BYTES = 1 << 20  # what `inspect` reads to decide the form
SAMPLE_ROWS = 500
CANDIDATES = (",", ";", "\t", "|")
SPACES = " "  # data.delimiter for runs of spaces or tabs (whitespace-aligned files)
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
MAX_CODES = 1 << 24  # categories a float32 code keeps exactly
STRAY_SHARE = 0.5  # a column whose cells are mostly numbers is numeric: its text cells are mistakes
# Archives whose bytes pyarrow's piece reader would take for text: named, never parsed.
COMPRESSED = {b"\x1f\x8b": "gzip-compressed", b"BZh": "bzip2-compressed", b"\xfd7zXZ\x00": "xz-compressed",
              b"\x28\xb5\x2f\xfd": "zstd-compressed", b"PK\x03\x04": "zip archive"}
UNPACK = {"gzip-compressed": "gunzip -k {path}", "bzip2-compressed": "bunzip2 -k {path}",
          "xz-compressed": "unxz -k {path}", "zstd-compressed": "unzstd {path}", "zip archive": "unzip {path}"}
BLOCK = 1 << 20  # bytes pyarrow parses per block (per thread)
PIECE = 2 << 20  # bytes of a CSV parsed at a time: what is held besides the matrix (1.75x the arrays at 200k rows)


@dataclass
class TableFormat:
    """How a table file is written: what `evaluate --data` and `predict` read files as."""

    kind: str  # csv | parquet
    names: list[str]  # every column, in order
    header: bool = False  # csv: the first row names the columns (and is skipped)
    delimiter: str = ","  # csv: the character, or ' ' for runs of spaces
    decimal: str = "."  # csv: ',' in files that write 3,14
    quoted: bool = True  # csv: quotes seen (a quoted cell may span lines)

    def column(self, ref: str | int) -> str | None:
        """The column a name or a 0-based position (-1: the last) refers to, or None."""
        if isinstance(ref, int):
            return self.names[ref] if -len(self.names) <= ref < len(self.names) else None
        return ref if ref in self.names else None

    def lacking(self, wanted: list[str]) -> str | None:
        """The first of `wanted` the file has no column for, or None."""
        return next((name for name in wanted if name not in self.names), None)

    def shown(self, limit: int = 30) -> str:
        """The column names, for a message (the first `limit` of a wide file)."""
        more = f", ... ({len(self.names)} in all)" if len(self.names) > limit else ""
        return ", ".join(self.names[:limit]) + more

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TableFormat:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class TableColumns:
    """What `read_table` read: the feature matrix, the kind and categories of each column,
    the target, and what was missing."""

    x: np.ndarray  # rows x features, float32: numbers, or codes into `categories`; NaN = missing
    kinds: list[str]  # per feature: numeric | categorical
    categories: list[list[str] | None]  # per feature: the file's categories, sorted
    missing: list[int]  # per feature: missing cells (before any row is dropped)
    y: np.ndarray | None = None  # the target: int64 / float64 numbers, or str labels
    y_labels: list[str] | None = None  # streamed (`tablestream`): y holds codes into these sorted labels
    target_kind: str | None = None  # numeric | text
    rows_read: int = 0
    dropped: dict = field(default_factory=dict)  # why -> rows dropped ('missing target', 'missing cells')


def where_row(path: str, fmt: TableFormat, row: int) -> str:
    """'file:line' of the data row `row` (0-based), or 'file: row N' for Parquet."""
    if fmt.kind == "parquet":
        return f"{path}: row {row + 1}"
    line = line_of(path, fmt, row)
    return f"{path}:{line}" if line else str(path)


# ---------------------------------------------------------------- the file's form


def inspect(path: str, header="auto", columns=None, delimiter: str = "auto", missing=(), kind: str = "csv",
            shown: str | None = None) -> TableFormat:
    """The form of a table file: column names, header, delimiter, decimal mark.

    Args:
        path: the file (checked to be a regular file).
        header: True, False or 'auto' (a first row of text over columns of numbers).
        columns: names for the columns, or None (the header's, or positions '0', '1', ...).
        delimiter: the character, ' ' for runs of spaces, or 'auto'.
        missing: the markers of missing cells (never taken for a header).
        kind: 'csv' or 'parquet'.
        shown: where a problem with `columns` points (the config's line).
    """
    data_file(path)
    if kind == "parquet":
        names = _parquet_file(path).schema_arrow.names
        _check_names(names, path)
        return TableFormat("parquet", [str(n) for n in names])
    text = _sample(path)
    if not text.strip():
        raise ConfigError(Problem("the file is empty; a table needs rows", where=path))
    sep = delimiter if delimiter != "auto" else _sniff_delimiter(text)
    rows = _sample_rows(text, sep)
    if not rows:
        raise ConfigError(Problem("the file holds no rows", where=path))
    width = len(rows[0])
    markers = set(missing)
    has_header = _has_header(rows, markers) if header == "auto" else bool(header)
    if columns is not None:
        if len(columns) != width:
            raise ConfigError(Problem(
                f"data.columns names {len(columns)} columns but the file's first row has {width}; "
                "name every column, in order", where=shown or path))
        names = list(columns)
    elif has_header:
        names = [cell.strip() or str(i) for i, cell in enumerate(rows[0])]
        first = line_of(path, TableFormat("csv", names, False, sep, ".", True), 0) or 1
        _check_names(names, f"{path}:{first}")
    else:
        names = [str(i) for i in range(width)]
    body = rows[1:] if has_header else rows
    decimal = "," if sep != "," and _decimal_comma(body) else "."
    return TableFormat("csv", names, has_header, sep, decimal, '"' in text)


def _check_names(names: list, where: str) -> None:
    """Each column named once: a duplicated name would be read from one column silently."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise ConfigError(Problem(
                f"column '{name}' appears twice in the header (columns {seen[name]} and {position}); rename one",
                where=where,
            ))
        seen[name] = position


def _sample(path: str) -> str:
    """The file's first SAMPLE_BYTES as text, cut at a line end.
    `inspect` and `read_table` both look at it: it is read once per version of the file."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=path)) from None
    return _read_sample(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_sample(path: str, mtime_ns: int, size: int) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(SAMPLE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=path)) from None
    packed = next((name for magic, name in COMPRESSED.items() if raw.startswith(magic)), None)
    if packed:
        raise ConfigError(Problem(
            f"is a {packed} file; dlcli reads tables as plain CSV text or Parquet: unpack it first "
            f"({UNPACK[packed].format(path=path)}), or save it as Parquet", where=path))
    whole = len(raw) <= SAMPLE_BYTES
    if not whole:
        end = max(raw.rfind(b"\n", 0, SAMPLE_BYTES), raw.rfind(b"\r", 0, SAMPLE_BYTES))
        if end < 0:
            raise ConfigError(Problem(
                f"the first line is over {SAMPLE_BYTES:,} bytes long; this is not a table with one row per line",
                where=f"{path}:1"))
        raw = raw[:end + 1]
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = len(line_ends(np.frombuffer(raw[:exc.start] + b"\0", dtype=np.uint8))) + 1
        raise ConfigError(Problem(f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8",
                                  where=f"{path}:{line}")) from None


def _split_spaces(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def _universal(text: str) -> io.StringIO:
    """The sample as lines for Python's csv module, whatever ends them (\\n, \\r\\n or \\r)."""
    return io.StringIO(text, newline=None)


def _sample_rows(text: str, sep: str) -> list[list[str]]:
    if sep == SPACES:
        rows = _split_spaces(text)
    else:
        try:
            rows = [row for row in csv.reader(_universal(text), delimiter=sep) if any(c.strip() for c in row)]
        except csv.Error:
            rows = [line.split(sep) for line in text.splitlines() if line.strip()]
    return rows[:SAMPLE_ROWS + 1]


def _sniff_delimiter(text: str) -> str:
    """The candidate that splits the sample's rows into the same number (>1) of cells most
    consistently; runs of spaces when none does."""
    best, best_score = ",", (0.0, 0)
    for sep in CANDIDATES:
        try:
            rows = [row for row in csv.reader(_universal(text), delimiter=sep) if any(c.strip() for c in row)]
        except csv.Error:
            continue
        score = _consistency(rows[:SAMPLE_ROWS])
        if score > best_score:
            best, best_score = sep, score
    if best_score[1] > 1 and best_score[0] >= 0.9:
        return best
    spaced = _consistency(_split_spaces(text)[:SAMPLE_ROWS])
    if spaced[1] > 1 and spaced[0] >= 0.9:
        return SPACES
    return best


def _consistency(rows: list[list[str]]) -> tuple[float, int]:
    """(share of rows with the most common width, that width); (0, 0) for widths of 1."""
    if not rows:
        return 0.0, 0
    widths = np.bincount([len(r) for r in rows])
    width = int(widths.argmax())
    return (float(widths[width]) / len(rows), width) if width > 1 else (0.0, 0)


def is_number(text: str, decimal: str = ".") -> bool:
    if decimal != ".":
        text = text.replace(decimal, ".", 1)
    return re.match(NUMBER, text) is not None


def _has_header(rows: list[list[str]], markers: set) -> bool:
    """A first row of text over columns of numbers is a header. Failing that (a header of
    numbers, such as `1,0,label`, or no column of numbers), a first row whose cells never
    appear again in their columns of text is one, where those columns repeat their values
    (categories, labels): a data row shares its categories with the rows below."""
    first, body = rows[0], rows[1:]
    if not body:
        return not all(is_number(c.strip()) or c.strip() in markers for c in first)
    numeric_column = False
    repeating = []  # per column of repeated text values: does the first row's cell come again?
    for j, cell in enumerate(first):
        below = [r[j].strip() for r in body if j < len(r) and r[j].strip() not in markers]
        column_of_numbers = bool(below) and all(is_number(c) or is_number(c, ",") for c in below)
        numeric_column |= column_of_numbers
        if column_of_numbers and cell.strip() not in markers and not (is_number(cell.strip()) or is_number(cell.strip(), ",")):
            return True
        if not column_of_numbers and len(below) >= 4 and len(set(below)) <= len(below) // 2:
            repeating.append(cell.strip() in below)
    if repeating and not any(repeating) and len({c.strip() for c in first}) == len(first):
        return True
    if numeric_column:
        return False
    cells = [c.strip() for c in first]
    return len(set(cells)) == len(cells) and all(
        c and all(j >= len(r) or r[j].strip() != c for r in body) for j, c in enumerate(cells))


def _decimal_comma(rows: list[list[str]]) -> bool:
    """Cells such as 3,14 (and none such as 3.14): the file writes a decimal comma."""
    comma = dot = 0
    for row in rows[:SAMPLE_ROWS]:
        for cell in row:
            cell = cell.strip()
            if re.match(r"^[+-]?\d*,\d+$", cell):
                comma += 1
            elif re.match(r"^[+-]?\d*\.\d+$", cell):
                dot += 1
    return comma > 0 and dot == 0


# ---------------------------------------------------------------- reading


def read_table(path: str, fmt: TableFormat, features: list[str], target: str | None, kinds: dict,
               missing, on_missing: str = "fill") -> TableColumns:
    """Read `features` (and `target`) of a table file as a float32 matrix.

    Args:
        path: the file, in the form `fmt` describes.
        fmt: from `inspect` (or a run's preprocessing.json).
        features: the columns of the matrix, in order.
        target: the target column, or None (`predict`).
        kinds: column -> numeric | categorical; columns not in it are inferred.
        missing: the markers of missing cells (after trimming).
        on_missing: 'fill' keeps rows with missing features (NaN), 'drop' drops them,
            'error' refuses the first one. A row whose target is missing is dropped, or
            refused with 'error'.
    """
    data_file(path)
    wanted = [*features, *([target] if target is not None else [])]
    markers = list(missing)
    if fmt.kind == "parquet":
        columns = _ParquetColumns(path, wanted)
        rows = columns.handle.metadata.num_rows
        x = np.empty((rows, len(features)), dtype="float32")
    else:
        x, columns, rows = _csv_columns(path, fmt, features, target, kinds, markers)
    # Each remaining column's plan (its kind, categories, and the lookup from pyarrow's
    # dictionary to numbers) is where a stray cell is found; then its numbers are written
    # and the column is let go (a Parquet column is read only now).
    plans = []
    release = _releaser()
    for j, name in enumerate(features):
        if name not in columns:  # numbers already in the matrix
            plans.append(_Plan("numeric"))
            continue
        column = columns.pop(name)
        plan = _plan(column, name, kinds.get(name, "auto"), markers, path, fmt)
        _write_column(x, j, plan.column if plan.column is not None else column, plan)
        plans.append(plan)
        del column
        plan.column = None
        release()
    table = TableColumns(x, [p.kind for p in plans], [p.categories for p in plans], [], rows_read=rows)
    target_missing = np.zeros(rows, dtype=bool)
    if target is not None:
        table.y, table.target_kind, target_missing = _target(columns.pop(target), markers, target, path, fmt)
        _check_target(table, target, target_missing, on_missing, path, fmt)
    row_missing = np.zeros(rows, dtype=bool)
    counts = np.zeros(len(features), dtype="int64")
    for start in range(0, rows, 1 << 16):  # in blocks: no temporary the size of the matrix
        block = table.x[start:start + (1 << 16)]
        absent = np.isnan(block)
        counts += absent.sum(axis=0)
        row_missing[start:start + len(block)] = absent.any(axis=1)
        bad = np.isinf(block).any(axis=0)
        if bad.any():
            j = int(np.argmax(bad))
            row = start + int(np.argmax(np.isinf(block[:, j])))
            raise ConfigError(Problem(_not_float32(f"column '{features[j]}'", cell_at(path, fmt, row, features[j])),
                                      where=where_row(path, fmt, row)))
    table.missing = [int(c) for c in counts]
    _apply_missing(table, target_missing, row_missing, on_missing, features, path, fmt)
    return table


def _check_target(table: TableColumns, target: str, target_missing, on_missing: str, path: str, fmt) -> None:
    if table.target_kind == "numeric" and table.y.dtype.kind == "f":
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(table.y.astype("float32")) & ~target_missing
        if bad.any():
            row = int(np.argmax(bad))
            raise ConfigError(Problem(_not_float32(f"the target '{target}'", cell_at(path, fmt, row, target)),
                                      where=where_row(path, fmt, row)))
    if target_missing.any() and on_missing == "error":
        row = int(np.argmax(target_missing))
        raise ConfigError(Problem(f"the target '{target}' is missing; fill the cell or set data.on_missing: "
                                  "fill or drop (rows without a target are dropped)", where=where_row(path, fmt, row)))


def _write_column(x: np.ndarray, j: int, column, plan) -> None:
    start = 0
    for chunk in column.chunks:
        _write_chunk(x[start:start + len(chunk)], j, chunk, plan)
        start += len(chunk)


def _write_chunk(block: np.ndarray, j: int, chunk, plan) -> None:
    if plan.lookup is None:  # numbers
        block[:, j] = to_numpy(chunk, np.nan)
    else:
        block[:, j] = plan.lookup[to_numpy(chunk.indices, len(plan.lookup) - 1)]


def to_numpy(array, fill) -> np.ndarray:
    """A pyarrow array of numbers as a numpy array (null cells as `fill`), read from its
    buffer: pyarrow's own `to_numpy` imports pandas when it is installed (0.3 s)."""
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
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * size)


def _apply_missing(table: TableColumns, target_missing, row_missing, on_missing: str, features, path, fmt) -> None:
    def first():
        row = int(np.argmax(row_missing))
        return row, features[int(np.argmax(np.isnan(table.x[row])))]

    keep = kept_rows(table, target_missing, row_missing, on_missing, first, path, fmt)
    if keep is not None:
        table.x = table.x[keep]
        if table.y is not None:
            table.y = table.y[keep]


def kept_rows(table: TableColumns, target_missing, row_missing, on_missing: str, first, path, fmt):
    """data.on_missing's rule: the rows kept (None: all), recorded in `table.dropped`; under
    `error`, a ConfigError at the first missing cell (`first()` -> (row, column)). Reading
    whole and streaming share it."""
    missing_cells = None
    if any(table.missing):
        missing_cells = row_missing
        if on_missing == "error":
            row, column = first()
            raise ConfigError(Problem(
                f"column '{column}' is missing (data.on_missing: error); fill the cell, or set data.on_missing: "
                "fill (training mean, or a 'missing' category) or drop", where=where_row(path, fmt, row)))
    keep = ~target_missing
    if target_missing.any():
        table.dropped["missing target"] = int(target_missing.sum())
    if on_missing == "drop" and missing_cells is not None:
        table.dropped["missing cells"] = int((missing_cells & keep).sum())
        keep &= ~missing_cells
    return None if keep.all() else keep


class _ReadAsText(Exception):
    """A column read as numbers holds a cell that is not one: read it again as text."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _csv_columns(path: str, fmt: TableFormat, features: list[str], target: str | None, kinds: dict,
                 markers: list) -> tuple[np.ndarray, dict, int]:
    """Read a CSV: (the matrix with the numeric columns filled in, the other wanted columns
    as ChunkedArrays with one dictionary each, the row count). A column the sample shows
    holding numbers is read as numbers (float32; a target as float64); if pyarrow finds a
    cell that is not one, that column is read again as text."""
    wanted = [*features, *([target] if target is not None else [])]
    return typed_read(path, fmt, features, target, kinds, markers,
                      lambda types: _read_pieces(path, fmt, features, wanted, types, markers))


def typed_read(path: str, fmt: TableFormat, features: list[str], target: str | None, kinds: dict, markers: list,
               read):
    """`read(types)` with each wanted column's pyarrow type: numbers (float32; a target
    float64) where the sample shows numbers, else text; a column `read` finds a text cell in
    (`_ReadAsText`) is read again as text. Reading whole and streaming share it."""
    import pyarrow as pa

    wanted = [*features, *([target] if target is not None else [])]
    guess = _numeric_guess(path, fmt, wanted, markers)
    types = {name: pa.float32() if kinds.get(name, "auto") != "categorical" and name in guess else TEXT()
             for name in features}
    if target is not None:
        types[target] = pa.float64() if target in guess else TEXT()
    for _ in range(len(wanted) + 1):
        try:
            return read(types)
        except _ReadAsText as retry:
            types[retry.name] = TEXT()
    raise ConfigError(Problem("cannot read the table's columns", where=path))  # every column retried


def TEXT():
    import pyarrow as pa

    return pa.dictionary(pa.int32(), pa.string())


def _read_pieces(path, fmt, features, wanted, types, markers, whole: bool = False) -> tuple[np.ndarray, dict, int]:
    """Parse the file PIECE bytes at a time (each piece with pyarrow's threads), writing the
    numeric columns of each piece into the matrix and letting the piece go: the peak is the
    matrix plus one piece, not the matrix plus the whole parsed table."""
    import pyarrow as pa

    numeric = [(j, name) for j, name in enumerate(features) if types[name] == pa.float32()]
    kept = {name: [] for name in wanted if types[name] != pa.float32() or name not in features}
    x = np.empty((_rows_at_most(path), len(features)), dtype="float32")  # pages are committed as rows fill
    release = _releaser()
    rows = 0
    try:
        for source, first in _pieces(path, fmt, whole):
            table = _read_piece(source, first, path, fmt, wanted, types, markers)
            for batch in table.to_batches():
                block = x[rows:rows + batch.num_rows]
                for j, name in numeric:
                    block[:, j] = to_numpy(batch.column(name), np.nan)
                for name, chunks in kept.items():
                    chunks.append(batch.column(name))
                rows += batch.num_rows
            del table
            release()
    except ConfigError:
        if whole or not fmt.quoted:
            raise
        # A quote outside the CSV rules (5'11" in a cell) misled the cuts: read it whole.
        return _read_pieces(path, fmt, features, wanted, types, markers, whole=True)
    if rows == 0:
        raise ConfigError(Problem("the file has no data rows" + (" under its header" if fmt.header else "")
                                  + "; add rows", where=path))
    columns = {}
    for name, chunks in kept.items():
        column = pa.chunked_array(chunks)
        if pa.types.is_dictionary(column.type):
            column = pa.table({"c": column}).unify_dictionaries().column(0)
            longest = _longest(column.chunk(0).dictionary)
            if longest > CELL_LIMIT:
                raise diagnose(path, fmt, ValueError(f"a cell of column '{name}' has {longest:,} characters"))
        columns[name] = column
    return x[:rows], columns, rows


def _rows_at_most(path: str) -> int:
    """Lines in the file, whatever ends them (+1 for a last line without its end): at least
    its rows."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(PIECE), b""):
            lines += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            lines -= last == b"\r" and block[:1] == b"\n"  # a \r\n cut by the read: counted twice
            last = block[-1:]
    return lines + (last not in (b"\n", b"\r"))


def _pieces(path: str, fmt: TableFormat, whole: bool = False):
    """(source, first piece?) pairs: the file in pieces cut at line ends outside quoted cells,
    or whole (`whole`, or a file aligned with spaces, which is rewritten with tabs first)."""
    if fmt.delimiter == SPACES:
        yield _spaces_to_tabs(path), True
        return
    if whole:
        yield path, True
        return
    for number, (_, piece) in enumerate(spans(path, fmt)):
        yield piece, number == 0


def spans(path: str, fmt: TableFormat, size: int | None = None):
    """(byte offset, bytes) of each piece of a CSV: about `size` bytes cut after a line end
    outside quoted cells; pieces of blank lines only are left out. The first holds the header,
    if any. `data.streaming` reads a piece again from its offset."""
    size = size or PIECE
    carry, start = b"", 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(size), b""):
            data = carry + block
            cut = _cut(data, fmt.quoted and fmt.delimiter != SPACES)
            if cut == 0:
                carry = data
                continue
            piece, carry = data[:cut], data[cut:]
            if piece.strip():
                yield start, piece
            start += cut
    if carry.strip():
        yield start, carry


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


def line_ends(raw: np.ndarray) -> np.ndarray:
    """The offsets of the bytes that end a line: `\\n`, and a `\\r` not followed by `\\n` (old
    Mac files end lines with `\\r` alone; Excel exports mix all three, as pyarrow reads them).
    A `\\r` that is the last byte may be half of a `\\r\\n` split by the read: not an end yet."""
    newline = raw == 10
    if not (raw == 13).any():
        return np.flatnonzero(newline)
    lone = raw == 13
    lone[:-1] &= ~newline[1:]
    lone[-1] = False
    return np.flatnonzero(newline | lone)


def _read_piece(source, first: bool, path: str, fmt: TableFormat, wanted: list[str], types: dict, markers: list):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    read = pcsv.ReadOptions(column_names=fmt.names, skip_rows=1 if (first and fmt.header) else 0, block_size=BLOCK)
    parse = pcsv.ParseOptions(delimiter="\t" if fmt.delimiter == SPACES else fmt.delimiter,
                              quote_char='"' if fmt.delimiter != SPACES else False,
                              newlines_in_values=fmt.quoted and fmt.delimiter != SPACES, ignore_empty_lines=True)
    nulls = sorted({variant for m in markers for variant in (m, f" {m}", f"{m} ", f" {m} ")})
    convert = pcsv.ConvertOptions(column_types=types, include_columns=wanted, null_values=nulls,
                                  strings_can_be_null=False, quoted_strings_can_be_null=False,
                                  decimal_point=fmt.decimal, check_utf8=True)
    try:
        data = pa.BufferReader(source) if isinstance(source, bytes) else source
        return pcsv.read_csv(data, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        found = re.search(r"In CSV column #(\d+): CSV conversion error to (float|double)", str(exc))
        name = fmt.names[int(found[1])] if found and int(found[1]) < len(fmt.names) else None
        if name is not None and pa.types.is_floating(types.get(name)):
            raise _ReadAsText(name) from None
        raise diagnose(path, fmt, exc) from None
    except (OSError, pa.ArrowException) as exc:
        raise diagnose(path, fmt, exc) from None


def _releaser():
    """A function that hands pyarrow's freed memory back to the system: without it the
    allocator keeps every parsed column, and the peak is the table plus the matrix."""
    try:
        import pyarrow as pa
    except ImportError:  # Parquet/CSV always import it; kept safe for callers without tables
        return lambda: None
    return pa.default_memory_pool().release_unused


def _longest(strings) -> int:
    import pyarrow.compute as pc

    if len(strings) == 0:
        return 0
    return int(pc.max(pc.utf8_length(strings)).as_py() or 0)


def _numeric_guess(path: str, fmt: TableFormat, wanted: list[str], markers: list) -> set:
    """Columns whose present cells in the sample are all numbers."""
    rows = _sample_rows(_sample(path), fmt.delimiter)[1 if fmt.header else 0:]
    index = {name: i for i, name in enumerate(fmt.names)}
    marks = set(markers)
    numeric = set()
    for name in wanted:
        j = index[name]
        cells = [r[j].strip() for r in rows if j < len(r)]
        present = [c for c in cells if c not in marks]
        if present and all(is_number(c, fmt.decimal) for c in present):
            numeric.add(name)
    return numeric


def _spaces_to_tabs(path: str) -> bytes:
    """A whitespace-aligned file as tab-separated bytes (pyarrow splits on one character)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=path)) from None
    return tabbed(raw)


def tabbed(raw: bytes) -> bytes:
    """Lines aligned with runs of spaces or tabs, as tab-separated cells."""
    raw = re.sub(rb"(?:^|(?<=[\r\n]))[ \t]+|[ \t]+(?=[\r\n]|\Z)", b"", raw)
    return re.sub(rb"[ \t]+", b"\t", raw)


def _parquet_file(path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(Problem(f"not a readable Parquet file ({str(exc).splitlines()[0][:200]})",
                                  where=path)) from None


class _ParquetColumns:
    """A Parquet file's wanted columns, each read when it is taken (`pop`): one column in
    memory at a time besides the matrix. Text columns come dictionary-encoded."""

    def __init__(self, path: str, wanted: list[str]):
        self.path, self.wanted, self.handle = path, set(wanted), _parquet_file(path)

    def __contains__(self, name: str) -> bool:
        return name in self.wanted

    def pop(self, name: str):
        import pyarrow as pa

        self.wanted.discard(name)
        try:
            column = self.handle.read(columns=[name]).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(Problem(f"cannot read column '{name}' ({str(exc).splitlines()[0][:200]})",
                                      where=self.path)) from None
        return parquet_column(column, name, self.path)


def parquet_column(column, name: str, path: str):
    """A Parquet column as `read_table` takes it: text dictionary-encoded (one dictionary),
    numbers as they are; a ConfigError for a column of another type."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pa.table({"c": column.cast(pa.string()).dictionary_encode()}).unify_dictionaries().column(0)
    if pa.types.is_dictionary(column.type):
        return pa.table({"c": column}).unify_dictionaries().column(0)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type)):
        raise ConfigError(Problem(f"column '{name}' is of type {column.type}, neither numbers nor text; "
                                  "leave it out of data.features", where=path))
    return column


# ---------------------------------------------------------------- columns to numbers


@dataclass
class _Plan:
    """How one column becomes numbers: its kind, its categories, and `lookup` from pyarrow's
    dictionary indices to numbers or category codes (None: the column holds numbers);
    `column` replaces the read one when it had to be re-encoded."""

    kind: str
    categories: list[str] | None = None
    lookup: np.ndarray | None = None
    column: object = None


def _plan(column, name: str, kind: str, markers: list, path: str, fmt: TableFormat) -> _Plan:
    """A column's plan; a ConfigError for a stray text cell in a column of numbers."""
    import pyarrow as pa

    if not pa.types.is_dictionary(column.type):  # numbers already
        if kind != "categorical":
            return _Plan("numeric")
        column = pa.table({"c": column.cast(pa.string()).dictionary_encode()}).unify_dictionaries().column(0)
        plan = _plan(column, name, kind, markers, path, fmt)
        plan.column = column
        return plan
    cells = _dictionary(column)
    counts = np.zeros(len(cells) + 1, dtype="int64")
    for indices in _indices(column, len(cells)):
        counts += np.bincount(indices, minlength=len(cells) + 1)

    def first_odd(odd: np.ndarray) -> tuple[int, str]:
        row = _first_row(column, odd)
        return row, cells[_index_at(column, row)]

    return plan_cells(cells, counts, name, kind, markers, path, fmt, first_odd)


def plan_cells(cells: list[str], counts: np.ndarray, name: str, kind: str, markers: list, path: str,
               fmt: TableFormat, first_odd) -> _Plan:
    """The plan of a text column from its distinct cells (trimmed) and how often each occurs
    (`counts`, one more at the end: null cells). `first_odd(mask over cells)` is the first
    (row, cell) holding one of the masked cells: where a stray cell is reported. `read_table`
    counts one column in memory; `data.streaming` counts the whole file piece by piece."""
    size = len(cells)
    refuse_nul(cells, first_odd, name, path, fmt)
    marks = set(markers)
    absent = np.array([c in marks for c in cells] + [True], dtype=bool)  # the last: a null cell
    numbers = np.array([is_number(c, fmt.decimal) for c in cells] + [False], dtype=bool) & ~absent
    present = ~absent
    if kind == "auto":
        text_cells = int(counts[present & ~numbers].sum())
        number_cells = int(counts[numbers].sum())
        if number_cells + text_cells == 0:
            raise ConfigError(Problem(f"column '{name}' has no values (every cell is missing); "
                                      "leave it out of data.features", where=path))
        if text_cells == 0:
            kind = "numeric"
        elif number_cells >= STRAY_SHARE * (number_cells + text_cells):
            _stray(first_odd, present & ~numbers, name, path, fmt, forced=False)
        else:
            kind = "categorical"
    lookup = np.full(size + 1, np.nan, dtype="float32")
    if kind == "numeric":
        if (present & ~numbers).any():
            _stray(first_odd, present & ~numbers, name, path, fmt, forced=True)
        with np.errstate(over="ignore"):
            lookup[numbers] = [float(c.replace(fmt.decimal, ".")) for c, n in zip(cells, numbers) if n]
        return _Plan("numeric", None, lookup)
    categories = sorted({c for c, a in zip(cells, absent) if not a})
    if len(categories) > MAX_CODES:
        raise ConfigError(Problem(f"column '{name}' has {len(categories):,} distinct values, too many to be "
                                  "categories; leave it out of data.features", where=path))
    position = {c: i for i, c in enumerate(categories)}
    lookup[:size] = [np.nan if a else position[c] for c, a in zip(cells, absent)]
    return _Plan("categorical", categories, lookup)


def refuse_nul(cells: list[str], first_odd, name: str, path: str, fmt: TableFormat) -> None:
    """A ConfigError at the first row whose cell of column `name` holds a NUL byte: no text
    table writes one (the file is damaged, or binary), and it would become part of a
    category or label unseen."""
    odd = np.array(["\x00" in c for c in cells] + [False], dtype=bool)
    if odd.any():
        row, cell = first_odd(odd)
        raise ConfigError(Problem(f"column '{name}' has a NUL byte (\\x00) in {cell!r}; text tables hold none "
                                  "(the file is damaged or binary): remove the byte or fix the export",
                                  where=where_row(path, fmt, row)))


def _dictionary(column) -> list[str]:
    """A dictionary column's values as trimmed text."""
    values = column.chunk(0).dictionary.to_pylist() if column.num_chunks else []
    return [v.strip() if isinstance(v, str) else ("" if v is None else str(v)) for v in values]


def _indices(column, size: int):
    """Each chunk's dictionary indices as a numpy array, a null cell as `size`."""
    for chunk in column.chunks:
        yield to_numpy(chunk.indices, size)


def _not_float32(what: str, cell: str | None) -> str:
    try:
        finite = cell is not None and np.isfinite(float(cell.replace(",", ".")))
    except ValueError:
        finite = False
    if finite:
        return f"{what} is {cell}, out of float32 range (±{FLOAT32_MAX:.3g}); rescale the column"
    shown = f" is {cell}" if cell is not None else " holds an infinite number"
    return f"{what}{shown}, not a finite number; fix the cell, or add it to data.missing"


def cell_at(path: str, fmt: TableFormat, row: int, name: str) -> str | None:
    """The text of column `name` in data row `row` (a CSV walked again; None for Parquet)."""
    if fmt.kind != "csv" or name not in fmt.names:
        return None
    skip = 1 if fmt.header else 0
    position = fmt.names.index(name)
    try:
        for index, (_, cells) in enumerate(_rows(path, fmt)):
            if index == row + skip:
                return cells[position].strip() if position < len(cells) else None
    except (ConfigError, OSError, UnicodeDecodeError):
        return None
    return None


def _stray(first_odd, odd: np.ndarray, name: str, path: str, fmt: TableFormat, forced: bool):
    """Raise for the first cell of a column of numbers that is not one."""
    row, cell = first_odd(odd)
    shown = repr(cell) if cell else "an empty cell"
    fixes = (f"add {cell!r} to data.missing if it means 'no value', or fix the cell"
             if forced else
             f"add {cell!r} to data.missing if it means 'no value', or declare the column "
             f"{{name: {name}, type: categorical}} in data.features")
    what = "is declared numeric" if forced else "holds numbers"
    raise ConfigError(Problem(f"column '{name}' {what} but this row has {shown}; {fixes}",
                              where=where_row(path, fmt, row)))


def _first_row(column, odd: np.ndarray) -> int:
    start = 0
    for indices in _indices(column, len(odd) - 1):
        hits = np.flatnonzero(odd[indices])
        if len(hits):
            return start + int(hits[0])
        start += len(indices)
    return 0


def _index_at(column, row: int) -> int:
    """The dictionary index of `row` in a dictionary column."""
    start = 0
    for chunk in column.chunks:
        if row < start + len(chunk):
            return int(chunk.indices[row - start].as_py())
        start += len(chunk)
    raise IndexError(row)


def _target(column, markers: list, name: str, path: str, fmt: TableFormat):
    """(values, 'numeric' | 'text', missing mask): numbers (int64 when whole) or labels."""
    import pyarrow as pa

    decimal = fmt.decimal

    if not pa.types.is_dictionary(column.type):
        parts = [to_numpy(chunk.cast(pa.float64()), np.nan) for chunk in column.chunks]
        values = np.concatenate(parts) if parts else np.zeros(0)  # a null cell: NaN
        absent = np.isnan(values)
        return _whole(values, absent), "numeric", absent
    cells = _dictionary(column)
    refuse_nul(cells, lambda odd: (_first_row(column, odd), cells[_index_at(column, _first_row(column, odd))]),
               name, path, fmt)
    marks = set(markers)
    absent = np.array([c in marks for c in cells] + [True], dtype=bool)
    parts = list(_indices(column, len(cells)))
    indices = np.concatenate(parts) if parts else np.zeros(0, dtype="int64")
    rows_absent = absent[indices]
    present = [c for c, a in zip(cells, absent) if not a]
    if present and all(is_number(c, decimal) for c in present):
        lookup = np.array([np.nan if a else float(c.replace(decimal, ".")) for c, a in zip(cells, absent)] + [np.nan])
        return _whole(lookup[indices], rows_absent), "numeric", rows_absent
    lookup = np.array([*cells, ""], dtype=str)
    return lookup[indices], "text", rows_absent


def _whole(values: np.ndarray, absent: np.ndarray) -> np.ndarray:
    present = values[~absent]
    if len(present) and np.all(np.mod(present, 1) == 0) and np.all(np.abs(present) < 2 ** 53):
        out = np.zeros(len(values), dtype="int64")
        out[~absent] = present.astype("int64")
        return out
    return values


# ---------------------------------------------------------------- line numbers, on the way to an error


def _rows(path: str, fmt: TableFormat):
    """(line, cells) of each non-blank row of a CSV, header included, walked with Python's
    csv module: the slow reading that knows line numbers."""
    data_file(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        if fmt.delimiter == SPACES:
            for number, line in enumerate(_lines(handle, path), start=1):
                if line.strip():
                    yield number, line.split()
            return
        reader = csv.reader(_lines(handle, path), delimiter=fmt.delimiter)
        line = 0
        try:
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield line + 1, row
                line = reader.line_num
        except csv.Error as exc:
            raise ConfigError(Problem(_csv_error(exc), where=f"{path}:{reader.line_num}")) from None


def line_of(path: str, fmt: TableFormat, row: int) -> int | None:
    """The line where data row `row` (0-based, after any header) starts."""
    skip = 1 if fmt.header else 0
    try:
        for index, (line, _) in enumerate(_rows(path, fmt)):
            if index == row + skip:
                return line
    except (ConfigError, OSError, UnicodeDecodeError):
        return None
    return None


def diagnose(path: str, fmt: TableFormat, exc: Exception) -> ConfigError:
    """What is wrong where, for a file pyarrow could not read: a row with the wrong number
    of cells, an unclosed quote, a line or cell too long, text that is not UTF-8."""
    width = len(fmt.names)
    what = "the header has" if fmt.header else "the first row has"
    try:
        for line, row in _rows(path, fmt):
            if len(row) != width:
                return ConfigError(Problem(f"has {len(row)} fields, {what} {width}; fix the row",
                                           where=f"{path}:{line}"))
    except ConfigError as error:
        return error
    except FileNotFoundError:
        return ConfigError(Problem(NOT_FOUND, where=path))
    except (OSError, UnicodeDecodeError) as error:
        return ConfigError(Problem(f"cannot read the data file: {error}", where=path))
    return ConfigError(Problem(f"cannot read the table: {str(exc).splitlines()[0][:300]}", where=path))


def _lines(handle, path: str):
    """The handle's lines, each read at most MAX_LINE characters at a time."""
    for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), ""), start=1):
        if len(line) > MAX_LINE:
            raise ConfigError(Problem(
                f"the line is over {MAX_LINE:,} characters long; this is not a CSV table with one row per line",
                where=f"{path}:{number}",
            ))
        yield line


def _csv_error(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return (
            f"a cell is over {csv.field_size_limit():,} characters, too large to be a number or a label; "
            "check for a quote (\") that is never closed, or give a CSV table"
        )
    return f"not a readable CSV row ({exc}); fix the row"
