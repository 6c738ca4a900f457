"""Reading a table whole: the wanted columns of a CSV or Parquet file as one float32 matrix.

`read_table` parses a CSV a piece at a time (`TableFile.spans` / `read_piece`, the reader
streaming uses too), writing each piece's columns of numbers straight into a preallocated
matrix and keeping its text columns (dictionaries, small); a Parquet file is read one column
at a time. Each text column is then planned over the whole file (`plan.plan_column`: its
kind, categories and lookup), written into the matrix, and let go. Peak memory is about the
matrix plus one piece (benchmarks/bench_tables.py: within twice the arrays, and within 1.5x
pyarrow.csv.read_csv's time). The target, values out of float32 range and data.on_missing
follow `columns`' rules.

Imports `arrow`, `columns`, `pieces`, `plan` and `tablefile` of `tables`; pyarrow inside
the functions.

Example:
    >>> file = TableFile.open("adult.csv", missing=["?"])
    >>> table = read_table(file, ["age", "workclass"], "income", {}, "fill")
    >>> table.x.shape, table.kinds
    ((32561, 2), ['numeric', 'categorical'])
"""

from __future__ import annotations

import numpy as np

from dlcli.data.sources.datafile import data_file
from dlcli.data.tables.arrow import codes, dictionary_cells, is_text, to_numpy, unified
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
    ColumnPlan,
    Numeric,
    column_first_odd,
    plan_column,
    read_typed,
    refuse_nul,
)
from dlcli.data.tables.tablefile import TableFile
from dlcli.errors import ConfigError

INF_BLOCK = 1 << 16  # rows per block of the check for inf: no temporary the size of the matrix
COUNT_BYTES = 2 << 20  # bytes read at a time to count a file's lines


def read_table(
    file: TableFile, features: list[str], target: str | None, kinds: dict, on_missing: str = "fill"
) -> TableColumns:
    """Read `features` (and `target`) of a table file as a float32 matrix.

    Args:
        file: the file, in its form (`TableFile.open`, or a run's preprocessing.json), with
            the markers of missing cells.
        features: the columns of the matrix, in order.
        target: the target column, or None (`predict`).
        kinds: column -> numeric | categorical (`plan.COLUMN_KINDS`); columns not in it are inferred.
        on_missing: 'fill' keeps rows with missing features (NaN), 'drop' drops them,
            'error' refuses the first one. A row whose target is missing is dropped, or
            refused with 'error'.
    """
    data_file(file.path)
    wanted = [*features, *([target] if target is not None else [])]
    if file.is_parquet:
        columns = file.parquet_columns(wanted)
        rows = columns.handle.metadata.num_rows
        x = np.empty((rows, len(features)), dtype="float32")
    else:
        x, columns, rows = read_typed(
            file, features, target, kinds, lambda types: _read_csv(file, features, wanted, types)
        )
    # Each remaining column's plan (its kind, categories, and the lookup from pyarrow's
    # dictionary to numbers) is where a stray cell is found; then its numbers are written
    # and the column is let go (a Parquet column is read only now).
    plans = []
    release = releaser()
    for j, name in enumerate(features):
        if name not in columns:  # numbers already in the matrix
            plans.append(ColumnPlan(Numeric.name))
            continue
        column = columns.pop(name)
        plan = plan_column(file, column, name, kinds.get(name, AUTO))
        _write_column(x, j, plan.column if plan.column is not None else column, plan)
        plans.append(plan)
        del column
        plan.column = None
        release()
    table = TableColumns(
        x, [p.kind for p in plans], [p.categories for p in plans], [], rows_read=rows
    )
    target_missing = np.zeros(rows, dtype=bool)
    if target is not None:
        table.y, table.target_kind, target_missing = _target(file, columns.pop(target), target)
        check_target(file, table, target, target_missing, on_missing)
    row_missing = np.zeros(rows, dtype=bool)
    counts = np.zeros(len(features), dtype="int64")
    for start in range(0, rows, INF_BLOCK):
        block = table.x[start : start + INF_BLOCK]
        absent = np.isnan(block)
        counts += absent.sum(axis=0)
        row_missing[start : start + len(block)] = absent.any(axis=1)
        bad = np.isinf(block).any(axis=0)
        if bad.any():
            j = int(np.argmax(bad))
            row = start + int(np.argmax(np.isinf(block[:, j])))
            raise out_of_range(file, f"column '{features[j]}'", features[j], row)
    table.missing = [int(c) for c in counts]

    def first():
        row = int(np.argmax(row_missing))
        return row, features[int(np.argmax(np.isnan(table.x[row])))]

    keep = kept_rows(file, table, target_missing, row_missing, on_missing, first)
    if keep is not None:
        table.x = table.x[keep]
        if table.y is not None:
            table.y = table.y[keep]
    return table


def csv_inputs(file: TableFile, at_once: bool = False):
    """(what pyarrow parses, first piece?) pairs: the CSV's pieces as bytes (`TableFile.spans`),
    or, `at_once`, the file's path (pyarrow then reads it whole)."""
    if at_once:
        yield file.path, True
        return
    for number, (_, piece) in enumerate(file.spans()):
        yield piece, number == 0


def _read_csv(
    file: TableFile, features: list[str], wanted: list[str], types: dict, at_once: bool = False
) -> tuple[np.ndarray, dict, int]:
    """Parse the file a piece at a time, writing the numeric columns of each piece into the
    matrix and letting the piece go: the peak is the matrix plus one piece, not the matrix
    plus the whole parsed table. (the matrix with the numeric columns filled in, the other
    wanted columns as ChunkedArrays with one dictionary each, the row count)."""
    import pyarrow as pa

    numeric = [(j, name) for j, name in enumerate(features) if types[name] == pa.float32()]
    kept = {name: [] for name in wanted if types[name] != pa.float32() or name not in features}
    x = np.empty(
        (_lines_at_most(file.path), len(features)), dtype="float32"
    )  # pages are committed as rows fill
    release = releaser()
    rows = 0
    try:
        for source, first in csv_inputs(file, at_once):
            table = file.read_piece(source, first, wanted, types)
            for batch in table.to_batches():
                block = x[rows : rows + batch.num_rows]
                for j, name in numeric:
                    block[:, j] = to_numpy(batch.column(name), np.nan)
                for name, chunks in kept.items():
                    chunks.append(batch.column(name))
                rows += batch.num_rows
            del table
            release()
    except ConfigError:
        if at_once or not file.format.quotes_span_lines:
            raise
        # A quote outside the CSV rules (5'11" in a cell) misled the cuts: read it whole.
        return _read_csv(file, features, wanted, types, at_once=True)
    if rows == 0:
        raise file.no_rows()
    columns = {}
    for name, chunks in kept.items():
        column = pa.chunked_array(chunks)
        columns[name] = unified(column) if is_text(column) else column
    return x[:rows], columns, rows


def _lines_at_most(path: str) -> int:
    """Lines in the file, whatever ends them (+1 for a last line without its end): at least
    its rows."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(COUNT_BYTES), b""):
            lines += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            lines -= last == b"\r" and block[:1] == b"\n"  # a \r\n cut by the read: counted twice
            last = block[-1:]
    return lines + (last not in (b"\n", b"\r"))


def _write_column(x: np.ndarray, j: int, column, plan: ColumnPlan) -> None:
    start = 0
    for chunk in column.chunks:
        if plan.lookup is None:  # numbers
            x[start : start + len(chunk), j] = to_numpy(chunk, np.nan)
        else:
            x[start : start + len(chunk), j] = plan.lookup[
                to_numpy(chunk.indices, len(plan.lookup) - 1)
            ]
        start += len(chunk)


def _target(file: TableFile, column, name: str) -> tuple[np.ndarray, str, np.ndarray]:
    """(values, 'numeric' | 'text', missing mask): numbers (int64 when whole) or labels."""
    import pyarrow as pa

    if not is_text(column):
        parts = [to_numpy(chunk.cast(pa.float64()), np.nan) for chunk in column.chunks]
        values = np.concatenate(parts) if parts else np.zeros(0)  # a null cell: NaN
        absent = np.isnan(values)
        return whole_numbers(values, absent), "numeric", absent
    values = dictionary_cells(column)
    refuse_nul(file, name, values, column_first_odd(column, values))
    marks = set(file.missing)
    indices = codes(column, len(values))
    absent = np.array([c in marks for c in values] + [True], dtype=bool)[indices]
    numbers = target_numbers(file, values)
    if numbers is not None:
        return whole_numbers(numbers[indices], absent), "numeric", absent
    labels = np.array([*values, ""], dtype=str)
    return labels[indices], "text", absent
