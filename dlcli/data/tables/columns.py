"""What reading a table gives (`TableColumns`), and the rules both ways of reading apply to it
once the columns are planned: the target as numbers or labels, a value out of float32 range,
and `data.on_missing` (`kept_rows`).

`whole` and `stream` hold their rows differently (a matrix, or pieces of the file) and so
find the first row of a problem differently; the decisions and their words are these, shared.

Imports `form` and `tablefile` of `tables`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlcli.data.sources.base import FLOAT32_MAX
from dlcli.data.tables.form import is_number
from dlcli.data.tables.tablefile import TableFile
from dlcli.errors import ConfigError, Problem


@dataclass
class TableColumns:
    """What `read_table` or `scan` read: the feature matrix, the kind and categories of each
    column, the target, and what was missing."""

    x: np.ndarray  # rows x features, float32 (streamed: a `stream.TableRows`): numbers, or codes into `categories`; NaN = missing
    kinds: list[str]  # per feature: a name of `plan.COLUMN_KINDS` (numeric | categorical)
    categories: list[list[str] | None]  # per feature: the file's categories, sorted
    missing: list[int]  # per feature: missing cells (before any row is dropped)
    y: np.ndarray | None = None  # the target: int64 / float64 numbers, or str labels
    y_labels: list[str] | None = None  # streamed (`scan`): y holds codes into these sorted labels
    target_kind: str | None = None  # numeric | text
    rows_read: int = 0
    dropped: dict = field(
        default_factory=dict
    )  # why -> rows dropped ('missing target', 'missing cells')


def target_numbers(file: TableFile, values: list[str]) -> np.ndarray | None:
    """A text target's distinct cells as float64 numbers (NaN: missing; one more at the end,
    NaN, for a null cell) when every present one is a number; None when the target is labels."""
    marks, decimal = set(file.missing), file.format.decimal
    present = [c for c in values if c not in marks]
    if present and all(is_number(c, decimal) for c in present):
        return np.array(
            [np.nan if c in marks else float(c.replace(decimal, ".")) for c in values] + [np.nan]
        )
    return None


def whole_numbers(values: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """`values` as int64 when every present one is a whole number below 2**53 (a target of
    classes), else as they are."""
    present = values[~absent]
    if len(present) and np.all(np.mod(present, 1) == 0) and np.all(np.abs(present) < 2**53):
        out = np.zeros(len(values), dtype="int64")
        out[~absent] = present.astype("int64")
        return out
    return values


def not_float32(what: str, cell: str | None) -> str:
    """The message for a value out of float32 range (`cell`: its text, None if unknown)."""
    try:
        finite = cell is not None and np.isfinite(float(cell.replace(",", ".")))
    except ValueError:
        finite = False
    if finite:
        return f"{what} is {cell}, out of float32 range (±{FLOAT32_MAX:.3g}); rescale the column"
    shown = f" is {cell}" if cell is not None else " holds an infinite number"
    return f"{what}{shown}, not a finite number; fix the cell, or add it to data.missing"


def out_of_range(file: TableFile, what: str, name: str, row: int) -> ConfigError:
    """The error for column `name`'s value in data row `row`, out of float32 range."""
    return ConfigError(
        Problem(not_float32(what, file.cell_at(row, name)), where=file.where_row(row))
    )


def check_target(
    file: TableFile, table: TableColumns, target: str, target_missing: np.ndarray, on_missing: str
) -> None:
    """A target of numbers out of float32 range, or missing under `data.on_missing: error`."""
    if table.target_kind == "numeric" and table.y.dtype.kind == "f":
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(table.y.astype("float32")) & ~target_missing
        if bad.any():
            raise out_of_range(file, f"the target '{target}'", target, int(np.argmax(bad)))
    if target_missing.any() and on_missing == "error":
        row = int(np.argmax(target_missing))
        raise ConfigError(
            Problem(
                f"the target '{target}' is missing; fill the cell or set data.on_missing: "
                "fill or drop (rows without a target are dropped)",
                where=file.where_row(row),
            )
        )


def kept_rows(
    file: TableFile,
    table: TableColumns,
    target_missing: np.ndarray,
    row_missing: np.ndarray,
    on_missing: str,
    first,
) -> np.ndarray | None:
    """data.on_missing's rule: the rows kept (None: all), recorded in `table.dropped`; under
    `error`, a ConfigError at the first missing cell (`first()` -> (row, column))."""
    missing_cells = None
    if any(table.missing):
        missing_cells = row_missing
        if on_missing == "error":
            row, column = first()
            raise ConfigError(
                Problem(
                    f"column '{column}' is missing (data.on_missing: error); fill the cell, or set data.on_missing: "
                    "fill (training mean, or a 'missing' category) or drop",
                    where=file.where_row(row),
                )
            )
    keep = ~target_missing
    if target_missing.any():
        table.dropped["missing target"] = int(target_missing.sum())
    if on_missing == "drop" and missing_cells is not None:
        table.dropped["missing cells"] = int((missing_cells & keep).sum())
        keep &= ~missing_cells
    return None if keep.all() else keep
