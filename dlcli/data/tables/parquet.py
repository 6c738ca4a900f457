"""Parquet access: a table file's Parquet handle, its columns one at a time, its row groups.

A Parquet file needs no sniffing and no line numbers (a problem is shown at 'file: row N');
what it does need is a readable handle and columns of numbers or text: text comes
dictionary-encoded with one dictionary, as the CSV reader gives it, so that the column plans
(`dlcli.data.tables.plan`) see both formats alike. Reading whole takes one column at a time
(`ParquetColumns`), streaming one row group at a time (`read_row_group`).

pyarrow is imported inside the functions. Imports `arrow` of `tables`.
"""

from __future__ import annotations

from dlcli.data.tables.arrow import as_text
from dlcli.errors import ConfigError, Problem, first_line


def open_parquet(path: str):
    """A `pyarrow.parquet.ParquetFile`; a ConfigError naming the file when it is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(
            Problem(f"not a readable Parquet file ({first_line(exc)[:200]})", where=path)
        ) from None


def parquet_column(column, name: str, path: str):
    """A Parquet column as the plans take it: text dictionary-encoded (one dictionary),
    numbers as they are; a ConfigError for a column of another type."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return as_text(column)
    if pa.types.is_dictionary(column.type):
        return pa.table({"c": column}).unify_dictionaries().column(0)
    if not (
        pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
        or pa.types.is_boolean(column.type)
        or pa.types.is_decimal(column.type)
    ):
        raise ConfigError(
            Problem(
                f"column '{name}' is of type {column.type}, neither numbers nor text; "
                "leave it out of data.features",
                where=path,
            )
        )
    return column


def read_row_group(handle, group: int, wanted: list[str], path: str):
    """Row group `group` of the `wanted` columns, each as `parquet_column` gives it."""
    import pyarrow as pa

    try:
        table = handle.read_row_group(group, columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(
            Problem(f"cannot read row group {group} ({first_line(exc)[:200]})", where=path)
        ) from None
    return pa.table({name: parquet_column(table.column(name), name, path) for name in wanted})


class ParquetColumns:
    """A Parquet file's wanted columns, each read when it is taken (`pop`): one column in
    memory at a time besides the matrix. Text columns come dictionary-encoded."""

    def __init__(self, path: str, wanted: list[str]):
        self.path, self.wanted, self.handle = path, set(wanted), open_parquet(path)

    def __contains__(self, name: str) -> bool:
        return name in self.wanted

    def pop(self, name: str):
        import pyarrow as pa

        self.wanted.discard(name)
        try:
            column = self.handle.read(columns=[name]).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(
                Problem(f"cannot read column '{name}' ({first_line(exc)[:200]})", where=self.path)
            ) from None
        return parquet_column(column, name, self.path)
