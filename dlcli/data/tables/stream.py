"""`data.streaming` for tables: a CSV or Parquet file walked a piece at a time, never whole.

`scan` reads the file once, piece by piece (a CSV in the pieces `TableFile.spans` cuts, each
parsed by `TableFile.read_piece`, the reader `whole` uses too; a Parquet file one row group at
a time), and works out everything `read_table` would: each column's type (read again as text
when a cell is not a number: `plan.read_typed`), its kind and categories (`plan.plan_cells`
over the whole file's distinct cells and how often each occurs), the missing cells, the rows
dropped and the target (`columns`' rules). It keeps what is small: per text column its
distinct cells with their counts and first rows, the target column, one flag per row (kept
or dropped). Every problem `read_table` reports is reported with the same words at the same
`file:line`.

`TableRows` then reads any piece again on demand: the float32 rows `read_table` would have
given for it, categorical columns as codes into the file's categories.

Imports `arrow`, `columns`, `pieces`, `plan` and `tablefile` of `tables`; pyarrow inside the
functions.

Example:
    >>> table = scan(TableFile.open("big.csv", missing=["?"]), ["age", "workclass"], "income", {}, "fill")
    >>> len(table.x), table.x.read(0).shape, table.kinds
    (32561, (8120, 2), ['numeric', 'categorical'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlcli.data.sources.base import Rows
from dlcli.data.tables.arrow import as_text, codes, dictionary_cells, is_text, numbers, unified
from dlcli.data.tables.columns import (
    TableColumns,
    check_target,
    kept_rows,
    out_of_range,
    target_numbers,
    whole_numbers,
)
from dlcli.data.tables.pieces import releaser
from dlcli.data.tables.plan import (
    AUTO,
    Cells,
    Numeric,
    plan_cells,
    read_typed,
    refuse_nul,
    takes_numbers,
)
from dlcli.data.tables.tablefile import TableFile
from dlcli.errors import ConfigError, Problem

NOT_SET = np.iinfo("int64").max  # a first row not seen yet
INF_BLOCK = 1 << 16  # rows per block of read_table's check for inf (which column it names first)


# ---------------------------------------------------------------- a file's pieces


class _Pieces:
    """One file's pieces: `walk()` parses each in turn (the first pass), `table(k)` parses
    piece `k` again. Both give pyarrow tables of the `wanted` columns, text columns as
    dictionaries (one per piece)."""

    def __init__(self, file: TableFile, wanted: list[str], types: dict, kinds: dict):
        self.file, self.wanted, self.types, self.kinds = file, wanted, types, kinds
        self.places: list = []  # per piece: (byte offset, bytes) of a CSV, the row group of a Parquet file

    @property
    def path(self) -> str:
        return self.file.path

    def walk(self):
        if self.file.is_parquet:
            handle = self.file.parquet()
            for group in range(handle.metadata.num_row_groups):
                self.places.append(group)
                yield self._parquet(handle, group)
            return
        for offset, data in self.file.spans():
            self.places.append((offset, len(data)))
            yield self._csv(data, first=len(self.places) == 1)

    def table(self, piece: int, wanted: list[str] | None = None):
        place = self.places[piece]
        if self.file.is_parquet:
            return self._parquet(self.file.parquet(), place, wanted)
        offset, size = place
        return self._csv(self.file.read_span(offset, size), first=piece == 0, wanted=wanted)

    def _csv(self, data: bytes, first: bool, wanted: list[str] | None = None):
        wanted = wanted or self.wanted
        return self.file.read_piece(
            data, first, wanted, {name: self.types[name] for name in wanted}
        )

    def _parquet(self, handle, group: int, wanted: list[str] | None = None):
        import pyarrow as pa

        table = self.file.read_row_group(handle, group, wanted or self.wanted)
        columns = {}
        for name in table.column_names:
            column = table.column(name)
            if not takes_numbers(self.kinds.get(name, AUTO)) and not is_text(column):
                column = as_text(column)
            columns[name] = column
        return pa.table(columns)


# ---------------------------------------------------------------- what the first pass keeps


class _DistinctCells:
    """A text column's distinct cells (trimmed) over the whole file: how often each occurs,
    the first row that holds it, and (`null_count`) the null cells."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.cells: list[str] = []
        self.counts = np.zeros(0, dtype="int64")
        self.first = np.zeros(0, dtype="int64")
        self.null_count = 0

    def add(self, cells: list[str], piece_codes: np.ndarray, start: int) -> np.ndarray:
        """Count a piece (its dictionary `cells`, each row's index into it, null as
        len(cells)) whose first row is `start`; the global id of each of its cells."""
        ids = np.array([self._id(c) for c in cells] + [-1], dtype="int64")
        if len(self.cells) > len(self.counts):
            grow = len(self.cells) - len(self.counts)
            self.counts = np.concatenate([self.counts, np.zeros(grow, dtype="int64")])
            self.first = np.concatenate([self.first, np.full(grow, NOT_SET, dtype="int64")])
        piece = np.bincount(piece_codes, minlength=len(cells) + 1)
        self.null_count += int(piece[-1])
        np.add.at(self.counts, ids[:-1], piece[:-1])
        seen, where = np.unique(piece_codes, return_index=True)
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
        rows = np.where(odd[: len(self.cells)], self.first, NOT_SET)
        k = int(np.argmin(rows))
        return int(rows[k]), self.cells[k]

    def as_cells(self, file: TableFile, name: str) -> Cells:
        """What a plan sees of the column (`plan.Cells`)."""
        return Cells(
            file, name, self.cells, np.concatenate([self.counts, [self.null_count]]), self.first_odd
        )


@dataclass
class _Column:
    """What the first pass learns of one feature column."""

    name: str
    text: bool  # read as a dictionary of text cells (else as numbers)
    cells: _DistinctCells = field(default_factory=_DistinctCells)
    nan: int = 0  # numbers: missing cells
    first_nan: int = NOT_SET  # the first row with a missing cell
    first_inf: int = NOT_SET  # numbers: the first row with a number out of float32 range
    mapping: dict | None = None  # text, once planned: cell -> number or category code

    def add(self, column, start: int, missing_rows: np.ndarray, marks: set) -> None:
        if not self.text:
            values = numbers(column, "float32")
            absent = np.isnan(values)
            self.nan += int(absent.sum())
            infinite = np.isinf(values)
            if infinite.any():
                self.first_inf = min(self.first_inf, start + int(np.argmax(infinite)))
        else:
            column = unified(column)
            cells = dictionary_cells(column)
            piece_codes = codes(column, len(cells))
            self.cells.add(cells, piece_codes, start)
            absent = np.array([c in marks for c in cells] + [True], dtype=bool)[piece_codes]
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
        self.cells = _DistinctCells()

    def add(self, column, start: int) -> None:
        if not is_text(column):
            self.numbers.append(numbers(column, "float64"))
            return
        column = unified(column)
        cells = dictionary_cells(column)
        piece_codes = codes(column, len(cells))
        ids = self.cells.add(cells, piece_codes, start)
        self.codes.append(ids[piece_codes].astype("int32"))

    def _numbers(self) -> tuple[np.ndarray, str, np.ndarray]:
        """A column of numbers as `columns.whole_numbers` makes it (int64 when every present
        value is a whole number below 2**53), filled piece by piece: the file's targets are
        held once."""
        absent = np.concatenate([np.isnan(part) for part in self.numbers])
        whole = bool((~absent).any())
        for part in self.numbers:
            present = part[~np.isnan(part)]
            whole = whole and bool(
                np.all(np.mod(present, 1) == 0) and np.all(np.abs(present) < 2**53)
            )
        values = np.empty(len(absent), dtype="int64" if whole else "float64")
        start = 0
        for i, part in enumerate(self.numbers):
            values[start : start + len(part)] = np.where(np.isnan(part), 0, part) if whole else part
            start += len(part)
            self.numbers[i] = None
        return values, "numeric", absent

    def values(self, file: TableFile) -> tuple[np.ndarray, str, np.ndarray, list | None]:
        """(values, numeric | text, missing mask, labels): as reading whole decides, text as
        int32 codes into the sorted labels."""
        if self.numbers:
            return (*self._numbers(), None)
        target_codes = np.concatenate(self.codes) if self.codes else np.zeros(0, dtype="int32")
        cells, marks = self.cells.cells, set(file.missing)
        absent = np.array([c in marks for c in cells] + [True], dtype=bool)[
            target_codes
        ]  # -1 (a null cell) takes the last
        lookup = target_numbers(file, cells)
        if lookup is not None:
            return whole_numbers(lookup[target_codes], absent), "numeric", absent, None
        labels = sorted({c for c in cells if c not in marks})
        position = {c: i for i, c in enumerate(labels)}
        remap = np.array(
            [position.get(c, -1) if c not in marks else -1 for c in cells] + [-1], dtype="int32"
        )
        return remap[target_codes], "text", absent, labels


# ---------------------------------------------------------------- the first pass


def scan(
    file: TableFile, features: list[str], target: str | None, kinds: dict, on_missing: str = "fill"
) -> TableColumns:
    """`read_table` for `data.streaming`: the same columns, kinds, categories, missing
    counts, drops and target, with `x` a `TableRows` that reads the rows a piece at a time.
    A text target comes as int32 codes into `y_labels` (sorted)."""
    wanted = [*features, *([target] if target is not None else [])]

    def read(types):
        return _first_pass(_Pieces(file, wanted, types, kinds), features, target, kinds, on_missing)

    if file.is_parquet:
        return read({})
    return read_typed(file, features, target, kinds, read)


def _first_pass(
    pieces: _Pieces, features: list[str], target: str | None, kinds: dict, on_missing: str
) -> TableColumns:
    file = pieces.file
    marks = set(file.missing)
    columns: list[_Column] | None = None
    goal = _Target()
    missing_rows, starts = [], [0]
    release = releaser()
    for table in pieces.walk():
        if columns is None:
            columns = [_Column(name, is_text(table.column(name))) for name in features]
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
        raise file.no_rows()
    kinds_found, categories = [], []
    for column in columns:
        if not column.text:
            kinds_found.append(Numeric.name)
            categories.append(None)
            continue
        cells = column.cells
        plan = plan_cells(cells.as_cells(file, column.name), kinds.get(column.name, AUTO))
        column.mapping = {
            c: v for c, v in zip(cells.cells, plan.lookup[:-1].tolist()) if not np.isnan(v)
        }
        infinite = np.isinf(plan.lookup[:-1])
        if infinite.any():
            column.first_inf = int(cells.first[infinite].min())
        kinds_found.append(plan.kind)
        categories.append(plan.categories)
    table = TableColumns(None, kinds_found, categories, [], rows_read=total)
    target_missing = np.zeros(total, dtype=bool)
    if target is not None:
        if not goal.numbers:
            refuse_nul(file, target, goal.cells.cells, goal.cells.first_odd)
        table.y, table.target_kind, target_missing, table.y_labels = goal.values(file)
        check_target(file, table, target, target_missing, on_missing)
    _check_finite(file, columns)
    table.missing = [c.nan if not c.text else _text_missing(c) for c in columns]

    def first():
        row = min(c.first_nan for c in columns)
        return row, next(c.name for c in columns if c.first_nan == row)

    keep = kept_rows(file, table, target_missing, np.concatenate(missing_rows), on_missing, first)
    if table.y is not None and keep is not None:
        table.y = table.y[keep]
    table.x = TableRows(pieces, columns, np.asarray(starts, dtype="int64"), keep)
    return table


def _text_missing(column: _Column) -> int:
    kept = sum(
        int(n) for c, n in zip(column.cells.cells, column.cells.counts) if c in column.mapping
    )
    return int(column.cells.counts.sum()) + column.cells.null_count - kept


def _check_finite(file: TableFile, columns: list[_Column]) -> None:
    """A number out of float32 range, named as `read_table` names it: the first block of
    INF_BLOCK rows holding one, its first such column, that column's first such row."""
    found = {j: c.first_inf for j, c in enumerate(columns) if c.first_inf != NOT_SET}
    if not found:
        return
    block = min(row // INF_BLOCK for row in found.values())
    j = min(j for j, row in found.items() if row // INF_BLOCK == block)
    row, name = found[j], columns[j].name
    raise out_of_range(file, f"column '{name}'", name, row)


# ---------------------------------------------------------------- reading a piece again


class TableRows(Rows):
    """A table file's kept rows, read a piece at a time as float32 (`read_table`'s values)."""

    def __init__(
        self,
        pieces: _Pieces,
        columns: list[_Column],
        raw_starts: np.ndarray,
        keep: np.ndarray | None,
    ):
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
            raise ConfigError(
                Problem(
                    f"part {piece + 1} of the file holds {table.num_rows} rows where it held "
                    f"{expected}",
                    where=self.source.path,
                )
            )
        x = np.empty((table.num_rows, len(self.columns)), dtype="float32")
        for j, column in enumerate(self.columns):
            values = table.column(column.name)
            if column.text:
                values = unified(values)
                cells = dictionary_cells(values)
                x[:, j] = column.lookup(cells)[codes(values, len(cells))]
            else:
                x[:, j] = numbers(values, "float32")
        del table
        if self.keep is not None:
            x = x[self.keep[self.raw_starts[piece] : self.raw_starts[piece + 1]]]
        return x


__all__ = ["TableRows", "scan"]
