"""`data.streaming` for tables: a CSV or Parquet file walked a piece at a time, never whole.

`scan` reads the file once, piece by piece (a CSV in the pieces `tablefile.spans` cuts at
line ends outside quoted cells, about `PIECE` bytes each; a Parquet file one row group at a
time), and works out everything `read_table` would: each column's type (read again as text
when a cell is not a number), its kind and categories (`tablefile.plan_cells` over the whole
file's distinct cells and how often each occurs), the missing cells, the rows dropped and the
target. It keeps what is small: per text column its distinct cells with their counts and
first rows, the target column, one flag per row (kept or dropped). Every problem
`read_table` reports is reported with the same words at the same `file:line`.

`TableRows` then reads any piece again on demand: the float32 rows `read_table` would have
given for it, categorical columns as codes into the file's categories.

Example:
    >>> table = scan("big.csv", fmt, ["age", "workclass"], "income", {}, ["?"], "fill")
    >>> len(table.x), table.x.read(0).shape, table.kinds
    (32561, (8120, 2), ['numeric', 'categorical'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlcli.data.sources.base import Rows
from dlcli.data.tables.tablefile import (
    CELL_LIMIT,
    SPACES,
    TableColumns,
    TableFormat,
    _check_target,
    _dictionary,
    _indices,
    _longest,
    _not_float32,
    _parquet_file,
    _read_piece,
    _whole,
    cell_at,
    diagnose,
    is_number,
    kept_rows,
    parquet_column,
    plan_cells,
    refuse_nul,
    spans,
    tabbed,
    to_numpy,
    typed_read,
    where_row,
)
from dlcli.errors import ConfigError, Problem

PIECE = 8 << 20  # bytes of a CSV parsed at a time
NOT_SET = np.iinfo("int64").max  # a first row not seen yet
INF_BLOCK = 1 << 16  # rows per block of read_table's check for inf (which column it names first)


# ---------------------------------------------------------------- a file's pieces


class _Pieces:
    """One file's pieces: `walk()` parses each in turn (the first pass), `table(k)` parses
    piece `k` again. Both give pyarrow tables of the `wanted` columns, text columns as
    dictionaries (one per piece)."""

    def __init__(self, path: str, fmt: TableFormat, wanted: list[str], types: dict, kinds: dict, markers: list):
        self.path, self.fmt, self.wanted, self.types, self.kinds, self.markers = path, fmt, wanted, types, kinds, markers
        self.places: list = []  # per piece: (byte offset, bytes) of a CSV, the row group of a Parquet file

    def walk(self):
        if self.fmt.kind == "parquet":
            handle = _parquet_file(self.path)
            for group in range(handle.metadata.num_row_groups):
                self.places.append(group)
                yield self._parquet(handle, group)
            return
        for offset, data in spans(self.path, self.fmt, PIECE):
            self.places.append((offset, len(data)))
            yield self._csv(data, first=len(self.places) == 1)

    def table(self, piece: int, wanted: list[str] | None = None):
        place = self.places[piece]
        if self.fmt.kind == "parquet":
            return self._parquet(_parquet_file(self.path), place, wanted)
        offset, size = place
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(size)
        except OSError as exc:
            raise ConfigError(Problem(f"cannot read the data file: {exc.strerror or exc}", where=self.path)) from None
        return self._csv(data, first=piece == 0, wanted=wanted)

    def _csv(self, data: bytes, first: bool, wanted: list[str] | None = None):
        import pyarrow as pa

        wanted = wanted or self.wanted
        types = {name: self.types[name] for name in wanted}
        if self.fmt.delimiter == SPACES:
            data = tabbed(data)
        table = _read_piece(data, first, self.path, self.fmt, wanted, types, self.markers)
        for name in wanted:
            column = table.column(name)
            if pa.types.is_dictionary(column.type) and column.num_chunks:
                longest = max(_longest(chunk.dictionary) for chunk in column.chunks)
                if longest > CELL_LIMIT:
                    raise diagnose(self.path, self.fmt, ValueError(f"a cell of column '{name}' has {longest:,} characters"))
        return table

    def _parquet(self, handle, group: int, wanted: list[str] | None = None):
        import pyarrow as pa

        wanted = wanted or self.wanted
        try:
            table = handle.read_row_group(group, columns=wanted)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(Problem(f"cannot read row group {group} ({str(exc).splitlines()[0][:200]})",
                                      where=self.path)) from None
        columns = {}
        for name in wanted:
            column = parquet_column(table.column(name), name, self.path)
            if self.kinds.get(name) == "categorical" and not pa.types.is_dictionary(column.type):
                column = pa.table({"c": column.cast(pa.string()).dictionary_encode()}).unify_dictionaries().column(0)
            columns[name] = column
        return pa.table(columns)


def _text(column):
    """A dictionary column with one dictionary for all its chunks."""
    import pyarrow as pa

    return pa.table({"c": column}).unify_dictionaries().column(0) if column.num_chunks > 1 else column


def _numbers(column, dtype: str) -> np.ndarray:
    """A column of numbers as one numpy array (null cells as NaN)."""
    import pyarrow as pa

    if dtype == "float64":
        column = column.cast(pa.float64())
    with np.errstate(over="ignore"):  # 1e39 is inf in float32, as in read_table's matrix
        parts = [to_numpy(chunk, np.nan).astype(dtype, copy=False) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _codes(column, size: int) -> np.ndarray:
    parts = list(_indices(column, size))
    return np.concatenate(parts) if parts else np.zeros(0, dtype="int64")


# ---------------------------------------------------------------- what the first pass keeps


class _Cells:
    """A text column's distinct cells (trimmed) over the whole file: how often each occurs,
    the first row that holds it, and (`null_count`) the null cells."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.cells: list[str] = []
        self.counts = np.zeros(0, dtype="int64")
        self.first = np.zeros(0, dtype="int64")
        self.null_count = 0

    def add(self, cells: list[str], codes: np.ndarray, start: int) -> np.ndarray:
        """Count a piece (its dictionary `cells`, each row's index into it, null as
        len(cells)) whose first row is `start`; the global id of each of its cells."""
        ids = np.array([self._id(c) for c in cells] + [-1], dtype="int64")
        if len(self.cells) > len(self.counts):
            grow = len(self.cells) - len(self.counts)
            self.counts = np.concatenate([self.counts, np.zeros(grow, dtype="int64")])
            self.first = np.concatenate([self.first, np.full(grow, NOT_SET, dtype="int64")])
        piece = np.bincount(codes, minlength=len(cells) + 1)
        self.null_count += int(piece[-1])
        np.add.at(self.counts, ids[:-1], piece[:-1])
        seen, where = np.unique(codes, return_index=True)
        cells_seen = seen < len(cells)
        np.minimum.at(self.first, ids[seen[cells_seen]], start + where[cells_seen])
        return ids

    def _id(self, cell: str) -> int:
        found = self.ids.get(cell)
        if found is None:
            found = self.ids[cell] = len(self.cells)
            self.cells.append(cell)
        return found

    def first_odd(self, odd: np.ndarray) -> tuple[int, str]:
        """(row, cell) of the first row holding one of the cells `odd` masks."""
        rows = np.where(odd[:len(self.cells)], self.first, NOT_SET)
        k = int(np.argmin(rows))
        return int(rows[k]), self.cells[k]


@dataclass
class _Column:
    """What the first pass learns of one feature column."""

    name: str
    text: bool  # read as a dictionary of text cells (else as numbers)
    cells: _Cells = field(default_factory=_Cells)
    nan: int = 0  # numbers: missing cells
    first_nan: int = NOT_SET  # the first row with a missing cell
    first_inf: int = NOT_SET  # numbers: the first row with a number out of float32 range
    mapping: dict | None = None  # text, once planned: cell -> number or category code

    def add(self, column, start: int, missing_rows: np.ndarray, marks: set) -> None:
        if not self.text:
            values = _numbers(column, "float32")
            absent = np.isnan(values)
            self.nan += int(absent.sum())
            infinite = np.isinf(values)
            if infinite.any():
                self.first_inf = min(self.first_inf, start + int(np.argmax(infinite)))
        else:
            column = _text(column)
            cells = _dictionary(column)
            codes = _codes(column, len(cells))
            self.cells.add(cells, codes, start)
            absent = np.array([c in marks for c in cells] + [True], dtype=bool)[codes]
        if absent.any():
            self.first_nan = min(self.first_nan, start + int(np.argmax(absent)))
            missing_rows |= absent

    def lookup(self, cells: list[str]) -> np.ndarray:
        """A piece's dictionary -> float32 values (NaN: missing), by the column's plan."""
        return np.array([self.mapping.get(c, np.nan) for c in cells] + [np.nan], dtype="float32")


class _Target:
    """The target column over the whole file: numbers, or codes into its distinct cells."""

    def __init__(self):
        self.numbers: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.cells = _Cells()

    def add(self, column, start: int) -> None:
        import pyarrow as pa

        if not pa.types.is_dictionary(column.type):
            self.numbers.append(_numbers(column, "float64"))
            return
        column = _text(column)
        cells = _dictionary(column)
        codes = _codes(column, len(cells))
        ids = self.cells.add(cells, codes, start)
        self.codes.append(ids[codes].astype("int32"))

    def _numbers(self) -> tuple[np.ndarray, str, np.ndarray]:
        """A column of numbers as `_whole` makes it (int64 when every present value is a
        whole number below 2**53), filled piece by piece: the file's targets are held once."""
        absent = np.concatenate([np.isnan(part) for part in self.numbers])
        whole = bool((~absent).any())
        for part in self.numbers:
            present = part[~np.isnan(part)]
            whole = whole and bool(np.all(np.mod(present, 1) == 0) and np.all(np.abs(present) < 2 ** 53))
        values = np.empty(len(absent), dtype="int64" if whole else "float64")
        start = 0
        for i, part in enumerate(self.numbers):
            values[start:start + len(part)] = np.where(np.isnan(part), 0, part) if whole else part
            start += len(part)
            self.numbers[i] = None
        return values, "numeric", absent

    def values(self, markers: list, decimal: str) -> tuple[np.ndarray, str, np.ndarray, list | None]:
        """(values, numeric | text, missing mask, labels): as `tablefile._target` decides,
        text as int32 codes into the sorted labels."""
        if self.numbers:
            return (*self._numbers(), None)
        codes = np.concatenate(self.codes) if self.codes else np.zeros(0, dtype="int32")
        cells, marks = self.cells.cells, set(markers)
        present = [c for c in cells if c not in marks]
        absent_cell = np.array([c in marks for c in cells] + [True], dtype=bool)
        absent = absent_cell[codes]  # -1 (a null cell) takes the last
        if present and all(is_number(c, decimal) for c in present):
            lookup = np.array([np.nan if c in marks else float(c.replace(decimal, ".")) for c in cells] + [np.nan])
            return _whole(lookup[codes], absent), "numeric", absent, None
        labels = sorted(set(present))
        position = {c: i for i, c in enumerate(labels)}
        remap = np.array([position.get(c, -1) if c not in marks else -1 for c in cells] + [-1], dtype="int32")
        return remap[codes], "text", absent, labels


# ---------------------------------------------------------------- the first pass


def scan(path: str, fmt: TableFormat, features: list[str], target: str | None, kinds: dict, missing,
         on_missing: str = "fill") -> TableColumns:
    """`read_table` for `data.streaming`: the same columns, kinds, categories, missing
    counts, drops and target, with `x` a `TableRows` that reads the rows a piece at a time.
    A text target comes as int32 codes into `y_labels` (sorted)."""
    markers = list(missing)
    wanted = [*features, *([target] if target is not None else [])]

    def read(types):
        return _scan(_Pieces(path, fmt, wanted, types, kinds, markers), features, target, kinds, on_missing)

    if fmt.kind == "parquet":
        return read({})
    return typed_read(path, fmt, features, target, kinds, markers, read)


def _scan(pieces: _Pieces, features: list[str], target: str | None, kinds: dict, on_missing: str) -> TableColumns:
    import pyarrow as pa

    path, fmt, markers = pieces.path, pieces.fmt, pieces.markers
    marks = set(markers)
    columns: list[_Column] | None = None
    goal = _Target()
    missing_rows, starts = [], [0]
    release = _releaser()
    for table in pieces.walk():
        if columns is None:
            columns = [_Column(name, pa.types.is_dictionary(table.column(name).type)) for name in features]
        rows, start = table.num_rows, starts[-1]
        row_missing = np.zeros(rows, dtype=bool)
        for column in columns:
            column.add(table.column(column.name), start, row_missing, marks)
        if target is not None:
            goal.add(table.column(target), start)
        missing_rows.append(row_missing)
        starts.append(start + rows)
        del table
        release()
    total = starts[-1]
    if total == 0:
        raise ConfigError(Problem("the file has no data rows" + (" under its header" if fmt.header else "")
                                  + "; add rows", where=path))
    kinds_found, categories = [], []
    for column in columns:
        if not column.text:
            kinds_found.append("numeric")
            categories.append(None)
            continue
        cells = column.cells
        counts = np.concatenate([cells.counts, [cells.null_count]])
        plan = plan_cells(cells.cells, counts, column.name, kinds.get(column.name, "auto"), markers, path, fmt,
                          cells.first_odd)
        column.mapping = {c: v for c, v in zip(cells.cells, plan.lookup[:-1].tolist()) if not np.isnan(v)}
        infinite = np.isinf(plan.lookup[:-1])
        if infinite.any():
            column.first_inf = int(cells.first[infinite].min())
        kinds_found.append(plan.kind)
        categories.append(plan.categories)
    table = TableColumns(None, kinds_found, categories, [], rows_read=total)
    target_missing = np.zeros(total, dtype=bool)
    if target is not None:
        if not goal.numbers:
            refuse_nul(goal.cells.cells, goal.cells.first_odd, target, path, fmt)
        table.y, table.target_kind, target_missing, table.y_labels = goal.values(markers, fmt.decimal)
        _check_target(table, target, target_missing, on_missing, path, fmt)
    _check_finite(columns, path, fmt)
    table.missing = [c.nan if not c.text else _text_missing(c) for c in columns]
    keep = _kept(table, columns, target_missing, np.concatenate(missing_rows), on_missing, path, fmt)
    if table.y is not None and keep is not None:
        table.y = table.y[keep]
    table.x = TableRows(pieces, columns, np.asarray(starts, dtype="int64"), keep)
    return table


def _releaser():
    import pyarrow as pa

    return pa.default_memory_pool().release_unused


def _text_missing(column: _Column) -> int:
    kept = sum(int(n) for c, n in zip(column.cells.cells, column.cells.counts) if c in column.mapping)
    return int(column.cells.counts.sum()) + column.cells.null_count - kept


def _check_finite(columns: list[_Column], path: str, fmt: TableFormat) -> None:
    """A number out of float32 range, named as `read_table` names it: the first block of
    INF_BLOCK rows holding one, its first such column, that column's first such row."""
    found = {j: c.first_inf for j, c in enumerate(columns) if c.first_inf != NOT_SET}
    if not found:
        return
    block = min(row // INF_BLOCK for row in found.values())
    j = min(j for j, row in found.items() if row // INF_BLOCK == block)
    row, name = found[j], columns[j].name
    raise ConfigError(Problem(_not_float32(f"column '{name}'", cell_at(path, fmt, row, name)),
                              where=where_row(path, fmt, row)))


def _kept(table: TableColumns, columns: list[_Column], target_missing: np.ndarray, row_missing: np.ndarray,
          on_missing: str, path: str, fmt: TableFormat) -> np.ndarray | None:
    """The rows kept (None: all), and `table.dropped` (`tablefile.kept_rows`)."""

    def first():
        row = min(c.first_nan for c in columns)
        return row, next(c.name for c in columns if c.first_nan == row)

    return kept_rows(table, target_missing, row_missing, on_missing, first, path, fmt)


# ---------------------------------------------------------------- reading a piece again


class TableRows(Rows):
    """A table file's kept rows, read a piece at a time as float32 (`read_table`'s values)."""

    def __init__(self, pieces: _Pieces, columns: list[_Column], raw_starts: np.ndarray, keep: np.ndarray | None):
        self.source, self.columns, self.raw_starts, self.keep = pieces, columns, raw_starts, keep
        self.features = [c.name for c in columns]
        self.sample_shape = (len(columns),)
        if keep is None:
            self.starts = raw_starts
        else:  # kept rows before each piece
            self.starts = np.concatenate([[0], np.cumsum(keep, dtype="int64")])[raw_starts]

    def read(self, piece: int) -> np.ndarray:
        table = self.source.table(piece, self.features)
        expected = int(self.raw_starts[piece + 1] - self.raw_starts[piece])
        if table.num_rows != expected:  # the file changed since the first pass
            raise ConfigError(Problem(f"part {piece + 1} of the file holds {table.num_rows} rows where it held "
                                      f"{expected}", where=self.source.path))
        x = np.empty((table.num_rows, len(self.columns)), dtype="float32")
        for j, column in enumerate(self.columns):
            values = table.column(column.name)
            if column.text:
                values = _text(values)
                cells = _dictionary(values)
                x[:, j] = column.lookup(cells)[_codes(values, len(cells))]
            else:
                x[:, j] = _numbers(values, "float32")
        del table
        if self.keep is not None:
            x = x[self.keep[self.raw_starts[piece]:self.raw_starts[piece + 1]]]
        return x


__all__ = ["TableRows", "scan"]
