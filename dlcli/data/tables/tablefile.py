"""`TableFile`: one table file as dlcli reads it: its path, its form, its missing markers.

Everything about a table that needs to know which file, in which form, is a method here:
where a row is (`where_row`, `line_of`, `cell_at`, `diagnose`), its CSV pieces (`spans`,
`read_span`, `read_piece`), its Parquet handle and row groups, and the sample's guess of which
columns hold numbers. The work itself is done by the modules below it (`form`: the sniffing,
`diagnostics`: line numbers, `pieces`: the CSV reader, `parquet`); what a file's columns
become is decided above it (`plan`), and the two ways of reading a file (`whole`: the matrix
at once, `stream`: a piece at a time) take a `TableFile` and never a path and a format.

Example:
    >>> table = TableFile.open("adult.csv", missing=["?"])    # sniffs the form (`form.inspect`)
    >>> table.format.names[:2], table.where_row(10)
    (['age', 'workclass'], 'adult.csv:12')
    >>> TableFile("new.csv", TableFormat.from_dict(saved), ["?"])   # a form known already
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlcli.data.tables import diagnostics, pieces
from dlcli.data.tables.form import TableFormat, inspect, numbers_in_sample
from dlcli.data.tables.parquet import ParquetColumns, open_parquet, read_row_group
from dlcli.errors import ConfigError, Problem


@dataclass
class TableFile:
    """A table file in a known form. `missing`: the markers of a missing cell (after trimming)."""

    path: str
    format: TableFormat
    missing: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        path: str,
        header="auto",
        columns=None,
        delimiter: str = "auto",
        missing=(),
        kind: str = "csv",
        shown: str | None = None,
        skip_rows: int = 0,
    ) -> TableFile:
        """The file with its form worked out from its first megabyte (`form.inspect`, whose
        arguments these are: `shown` is where a problem with `columns` points, `skip_rows`
        the leading lines passed over)."""
        fmt = inspect(path, header, columns, delimiter, missing, kind, shown, skip_rows)
        return cls(path, fmt, list(missing))

    @property
    def is_parquet(self) -> bool:
        return self.format.kind == "parquet"

    # ------------------------------------------------------------ where a row is

    def where_row(self, row: int) -> str:
        """'file:line' of the data row `row` (0-based), or 'file: row N' for Parquet."""
        if self.is_parquet:
            return f"{self.path}: row {row + 1}"
        line = self.line_of(row)
        return f"{self.path}:{line}" if line else str(self.path)

    def line_of(self, row: int) -> int | None:
        """The line where data row `row` (0-based, after any header) starts (None: unknown)."""
        return diagnostics.line_of(self.path, self.format, row)

    def cell_at(self, row: int, name: str) -> str | None:
        """The text of column `name` in data row `row` (a CSV walked again; None for Parquet)."""
        return diagnostics.cell_at(self.path, self.format, row, name)

    def diagnose(self, exc: Exception) -> ConfigError:
        """What is wrong where, for a file pyarrow could not read (`exc`: what it said)."""
        return diagnostics.diagnose(self.path, self.format, exc)

    def no_rows(self) -> ConfigError:
        """The error for a file with no data rows."""
        return ConfigError(
            Problem(
                "the file has no data rows"
                + (" under its header" if self.format.header else "")
                + "; add rows",
                where=self.path,
            )
        )

    # ------------------------------------------------------------ CSV pieces

    def numbers_in_sample(self, wanted: list[str]) -> set[str]:
        """The columns of `wanted` whose present cells in the first megabyte are all numbers."""
        return numbers_in_sample(self.path, self.format, wanted, self.missing)

    def spans(self, size: int | None = None):
        """(byte offset, bytes) of each piece of a CSV (`pieces.spans`; about `pieces.PIECE` bytes)."""
        return pieces.spans(self.path, self.format, size)

    def read_span(self, offset: int, size: int) -> bytes:
        """A piece `spans` gave, read again from the file."""
        return pieces.read_span(self.path, offset, size)

    def read_piece(self, source, first: bool, wanted: list[str], types: dict):
        """A piece (bytes, or the path for the whole file at once) as a pyarrow table of the
        `wanted` columns, of the pyarrow `types` given (`pieces.read_piece`)."""
        return pieces.read_piece(source, first, self.path, self.format, wanted, types, self.missing)

    # ------------------------------------------------------------ Parquet

    def parquet(self):
        """The file's `pyarrow.parquet.ParquetFile`."""
        return open_parquet(self.path)

    def parquet_columns(self, wanted: list[str]) -> ParquetColumns:
        """The `wanted` columns of a Parquet file, each read when it is taken (reading whole)."""
        return ParquetColumns(self.path, wanted)

    def read_row_group(self, handle, group: int, wanted: list[str]):
        """Row group `group` of the `wanted` columns of the Parquet file `handle` is open on."""
        return read_row_group(handle, group, wanted, self.path)


__all__ = ["TableFile", "TableFormat"]
