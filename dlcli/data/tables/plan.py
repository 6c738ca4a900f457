"""Column plans: what each cell of a feature column becomes, decided once per column over the
whole file, the same way whether the file is read whole or streamed.

A column is read either as numbers (pyarrow parses them; a null cell is missing) or as text
(its distinct cells, trimmed, how often each occurs, and a way to find the first row holding
one: `Cells`). A text column's plan (`plan_cells`) is a `ColumnPlan`: its kind, its
categories, and `lookup` from each distinct cell to a float32 (a number, a category code, or
NaN for a missing cell). Here too the refusals that need the whole column: a NUL byte in a
cell, a stray text cell in a column of numbers, a column with no value at all.

The seam for new kinds of column is `ColumnKind`: one subclass per kind, named in
`COLUMN_KINDS` (today `numeric` and `categorical`). A kind says whether the CSV reader may
parse its cells as numbers (`parses_numbers`) and what its distinct cells become (`plan`).
Every other reader of kinds asks these two, so a new kind (free text, image paths) is one
class here, the name in the schema's `data.features` types, and what `preprocessing` fits
for it; text kinds give codes into their distinct values (`ColumnPlan.categories`), as
`categorical` does. `data.features` type `auto` (`infer_kind`) chooses between `numeric` and
`categorical` only: other kinds are declared.

Imports `form`, `arrow`, `pieces` and `tablefile` of `tables`; pyarrow inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dlcli.data.tables.arrow import (
    as_text,
    chunk_codes,
    code_at,
    dictionary_cells,
    first_row,
    is_text,
    text_type,
)
from dlcli.data.tables.form import is_number
from dlcli.data.tables.pieces import ReadAsText
from dlcli.data.tables.tablefile import TableFile
from dlcli.errors import ConfigError, Problem

MAX_CODES = 1 << 24  # categories a float32 code keeps exactly
STRAY_SHARE = 0.5  # a column whose cells are mostly numbers is numeric: its text cells are mistakes
AUTO = "auto"  # data.features type: the kind is inferred from the cells (`infer_kind`)


@dataclass
class ColumnPlan:
    """How one column becomes numbers: its kind, its categories (the values its codes refer
    to), and `lookup` from each distinct cell (one more at the end: a null cell) to a number
    or a code, NaN when missing. `lookup` None: the column holds numbers as read. `column`
    replaces the read one when it had to be read again as text."""

    kind: str
    categories: list[str] | None = None
    lookup: np.ndarray | None = None
    column: object = None


@dataclass
class Cells:
    """A text column as a plan sees it: its distinct cells (trimmed), how often each occurs
    (`counts`, one more at the end: the null cells), and `first_odd(mask over the cells)`,
    the first (row, cell) holding one of the masked cells, where a problem is shown.
    Reading whole counts one column in memory; streaming counts the file piece by piece."""

    file: TableFile
    name: str
    values: list[str]
    counts: np.ndarray
    first_odd: Callable[[np.ndarray], tuple[int, str]]

    @cached_property
    def absent(self) -> np.ndarray:
        """Per cell (and the last: a null cell): missing, a marker of data.missing."""
        marks = set(self.file.missing)
        return np.array([c in marks for c in self.values] + [True], dtype=bool)

    @cached_property
    def numbers(self) -> np.ndarray:
        """Per cell (and the last): a number in the file's decimal mark, and not missing."""
        decimal = self.file.format.decimal
        return (
            np.array([is_number(c, decimal) for c in self.values] + [False], dtype=bool)
            & ~self.absent
        )

    @property
    def not_numbers(self) -> np.ndarray:
        """Per cell: present, and not a number."""
        return ~self.absent & ~self.numbers

    def stray(self, odd: np.ndarray, forced: bool):
        """Raise for the first cell of a column of numbers that is not one (`odd` marks them);
        `forced`: the column is declared numeric (else it holds mostly numbers)."""
        row, cell = self.first_odd(odd)
        shown = repr(cell) if cell else "an empty cell"
        fixes = (
            f"add {cell!r} to data.missing if it means 'no value', or fix the cell"
            if forced
            else f"add {cell!r} to data.missing if it means 'no value', or declare the column "
            f"{{name: {self.name}, type: categorical}} in data.features"
        )
        what = "is declared numeric" if forced else "holds numbers"
        raise ConfigError(
            Problem(
                f"column '{self.name}' {what} but this row has {shown}; {fixes}",
                where=self.file.where_row(row),
            )
        )


# ---------------------------------------------------------------- the kinds of column


class ColumnKind:
    """One kind of feature column (`data.features` type): how its cells are read, and what
    its distinct cells become. Subclass it and name the subclass in COLUMN_KINDS."""

    name = ""
    parses_numbers = False  # the CSV reader may parse the cells as numbers (else: text)

    def plan(self, cells: Cells) -> ColumnPlan:
        """The plan of a column of this kind read as text."""
        raise NotImplementedError


class Numeric(ColumnKind):
    """Numbers: each cell its value (float32), a cell of text a ConfigError at its row."""

    name = "numeric"
    parses_numbers = True

    def plan(self, cells: Cells) -> ColumnPlan:
        if cells.not_numbers.any():
            cells.stray(cells.not_numbers, forced=True)
        lookup = np.full(len(cells.values) + 1, np.nan, dtype="float32")
        decimal = cells.file.format.decimal
        with np.errstate(over="ignore"):
            lookup[cells.numbers] = [
                float(c.replace(decimal, ".")) for c, n in zip(cells.values, cells.numbers) if n
            ]
        return ColumnPlan(self.name, None, lookup)


class Categorical(ColumnKind):
    """Categories: each cell the code of its value among the column's values, sorted (the
    vocabulary fitted on the training split is `preprocessing`'s)."""

    name = "categorical"

    def plan(self, cells: Cells) -> ColumnPlan:
        categories = sorted({c for c, a in zip(cells.values, cells.absent) if not a})
        if len(categories) > MAX_CODES:
            raise ConfigError(
                Problem(
                    f"column '{cells.name}' has {len(categories):,} distinct values, too many to "
                    "be categories; leave it out of data.features",
                    where=cells.file.path,
                )
            )
        position = {c: i for i, c in enumerate(categories)}
        lookup = np.full(len(cells.values) + 1, np.nan, dtype="float32")
        lookup[:-1] = [np.nan if a else position[c] for c, a in zip(cells.values, cells.absent)]
        return ColumnPlan(self.name, categories, lookup)


COLUMN_KINDS: dict[str, ColumnKind] = {kind.name: kind for kind in (Numeric(), Categorical())}


def takes_numbers(kind: str) -> bool:
    """Whether a column of `kind` (or `auto`) read as numbers is kept as numbers; else
    its numbers are taken as text cells (a Parquet column of codes declared categorical)."""
    return kind == AUTO or COLUMN_KINDS[kind].parses_numbers


class EmptyColumn(ConfigError):
    """A column with no value at all (every cell missing): nothing to learn from. `column`
    names it, for a caller that leaves such columns out (`dlcli init --from-data`)."""

    def __init__(self, column: str, path: str):
        super().__init__(
            Problem(
                f"column '{column}' has no values (every cell is missing); "
                "leave it out of data.features",
                where=path,
            )
        )
        self.column = column


def infer_kind(cells: Cells) -> str:
    """`auto`: numeric when every present cell is a number, categorical when most are text;
    a ConfigError for a column of mostly numbers with stray text, or with no value."""
    text_cells = int(cells.counts[cells.not_numbers].sum())
    number_cells = int(cells.counts[cells.numbers].sum())
    if number_cells + text_cells == 0:
        raise EmptyColumn(cells.name, cells.file.path)
    if text_cells == 0:
        return Numeric.name
    if number_cells >= STRAY_SHARE * (number_cells + text_cells):
        cells.stray(cells.not_numbers, forced=False)
    return Categorical.name


# ---------------------------------------------------------------- plans


def plan_cells(cells: Cells, kind: str) -> ColumnPlan:
    """The plan of a column read as text, of `kind` (a name of COLUMN_KINDS, or `auto`)."""
    refuse_nul(cells.file, cells.name, cells.values, cells.first_odd)
    if kind == AUTO:
        kind = infer_kind(cells)
    return COLUMN_KINDS[kind].plan(cells)


def plan_column(file: TableFile, column, name: str, kind: str) -> ColumnPlan:
    """The plan of a whole pyarrow column (a column of numbers of a kind that takes text is
    read again as text, in `ColumnPlan.column`)."""
    if not is_text(column):
        if takes_numbers(kind):
            return ColumnPlan(Numeric.name)
        column = as_text(column)
        plan = plan_column(file, column, name, kind)
        plan.column = column
        return plan
    values = dictionary_cells(column)
    counts = np.zeros(len(values) + 1, dtype="int64")
    for indices in chunk_codes(column, len(values)):
        counts += np.bincount(indices, minlength=len(values) + 1)
    return plan_cells(Cells(file, name, values, counts, column_first_odd(column, values)), kind)


def column_first_odd(column, values: list[str]) -> Callable[[np.ndarray], tuple[int, str]]:
    """`Cells.first_odd` of a pyarrow dictionary column held whole."""

    def first_odd(odd: np.ndarray) -> tuple[int, str]:
        row = first_row(column, odd)
        return row, values[code_at(column, row)]

    return first_odd


def refuse_nul(file: TableFile, name: str, values: list[str], first_odd) -> None:
    """A ConfigError at the first row whose cell of column `name` holds a NUL byte: no text
    table writes one (the file is damaged, or binary), and it would become part of a
    category or label unseen."""
    odd = np.array(["\x00" in c for c in values] + [False], dtype=bool)
    if odd.any():
        row, cell = first_odd(odd)
        raise ConfigError(
            Problem(
                f"column '{name}' has a NUL byte (\\x00) in {cell!r}; text tables hold none "
                "(the file is damaged or binary): remove the byte or fix the export",
                where=file.where_row(row),
            )
        )


# ---------------------------------------------------------------- how the CSV reader reads each column


def read_typed(file: TableFile, features: list[str], target: str | None, kinds: dict, read):
    """`read(types)` with each wanted column's pyarrow type: numbers (float32; a target
    float64) where the sample shows numbers and the kind takes them, else text; a column
    `read` finds a text cell in (`ReadAsText`) is read again as text. Reading whole and
    streaming share it."""
    import pyarrow as pa

    wanted = [*features, *([target] if target is not None else [])]
    guess = file.numbers_in_sample(wanted)
    types = {
        name: pa.float32()
        if takes_numbers(kinds.get(name, AUTO)) and name in guess
        else text_type()
        for name in features
    }
    if target is not None:
        types[target] = pa.float64() if target in guess else text_type()
    for _ in range(len(wanted) + 1):
        try:
            return read(types)
        except ReadAsText as retry:
            types[retry.name] = text_type()
    raise ConfigError(
        Problem("cannot read the table's columns", where=file.path)
    )  # every column retried
