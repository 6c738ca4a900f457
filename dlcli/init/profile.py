"""What a table file holds, as `dlcli init --from-data` needs to know it: its form, each
column's kind and values, the target's classes or range. Facts only: `dlcli.init.render`
turns them into a commented config.

The file is read with the reader `train` uses (`dlcli.data.tables`), so what the profile says
is what training will see. A column with no value at all is left out (a typed
`EmptyColumn` from the reader, not a message to parse) and the file read again; a first
line that counts the rows and columns below it (scikit-learn's CSVs begin with one: a typed
`LeadLine`) is skipped (`skip_rows`) and the file looked at again.

Example:
    >>> profile = profile_table("census.csv", target="-1")
    >>> profile.task, profile.rows, [c.name for c in profile.columns if c.left_out]
    ('classification', 32561, ['fnlwgt'])
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from dlcli.errors import ConfigError, Problem, did_you_mean

ID_SHARE = 0.5  # a text column with more distinct values than this share of its rows (and > ID_MIN) is an id
ID_MIN = 50
FREE_TEXT = 30  # characters a column's values hold on average, with spaces, to be documents


@dataclass
class ColumnProfile:
    """One feature column: its kind and what its values look like."""

    name: str
    kind: str  # numeric | categorical | text (documents) | empty (every cell missing)
    missing: int = 0
    low: float | None = None  # numeric: the range and mean of the present values
    high: float | None = None
    mean: float | None = None
    categories: list[tuple[str, int]] = field(
        default_factory=list
    )  # categorical: (category, rows), most common first
    rows: int = 0  # categorical: rows with a value
    left_out: str | None = None  # why the config leaves it out (commented), or None

    @property
    def distinct(self) -> int:
        return len(self.categories)


@dataclass
class TargetProfile:
    """The target column: classes with their counts, or the range of a regression target."""

    name: str
    ref: str | int  # how the config names it: its name, or its position in a file without a header
    task: str  # classification | regression
    text: bool  # the labels are text (else whole numbers)
    classes: list[tuple[str, int]] = field(
        default_factory=list
    )  # classification: (label, rows), most common first
    labels: list[str] = field(
        default_factory=list
    )  # classification: the labels, in the order of their values
    low: float | None = None  # regression
    high: float | None = None
    mean: float | None = None
    distinct: int = 0
    dropped: int = 0  # rows without a target (left out)


@dataclass
class TableProfile:
    """A table file as `init --from-data` found it."""

    file: str
    kind: str  # csv | parquet
    names: list[str]
    header: bool
    delimiter: str
    decimal: str
    rows: int
    columns: list[ColumnProfile]  # the features, in file order
    target: TargetProfile
    missing_markers: list[str]
    skip_rows: int = 0  # leading lines that are neither header nor data
    skipped: str | None = None  # what the last of them is, for the config's comment

    @property
    def positional(self) -> bool:
        """Columns are named by position: a CSV without a header."""
        return self.kind == "csv" and not self.header

    def ref(self, name: str) -> str | int:
        """How the config names column `name`."""
        return self.names.index(name) if self.positional else name


def profile_table(file: str | os.PathLike, target: str | int | None = None) -> TableProfile:
    """Read the table `file` (CSV, or Parquet by its .parquet/.pq suffix) and profile it.

    Args:
        file: the table file.
        target: the target column: a name, or a 0-based position (an int, or text such as
            '3' or '-1'); default the last column.
    """
    import numpy as np

    from dlcli.config.schema import MISSING_MARKERS
    from dlcli.data.sources.table import guess_task
    from dlcli.data.tables.form import LeadLine
    from dlcli.data.tables.plan import EmptyColumn
    from dlcli.data.tables.tablefile import TableFile
    from dlcli.data.tables.whole import read_table

    file = str(file)
    if not os.path.lexists(file):
        raise ConfigError(Problem("no such file; check the --from-data FILE path", where=file))
    kind = "parquet" if file.lower().endswith((".parquet", ".pq")) else "csv"
    markers = list(MISSING_MARKERS)
    skip_rows, skipped = 0, None
    while True:  # a count line before the header or the data: skip it and look again
        try:
            table_file = TableFile.open(
                file, "auto", None, "auto", markers, kind, skip_rows=skip_rows
            )
            break
        except LeadLine as lead:
            if lead.skip <= skip_rows:
                raise
            skip_rows, skipped = lead.skip, f"line {lead.line} ({lead.text}) {lead.why}"
    fmt = table_file.format
    names = fmt.names
    if len(names) < 2:
        raise ConfigError(
            Problem(
                f"found {len(names)} column; a table needs a target and at least one feature column"
                + (
                    ""
                    if kind == "parquet"
                    else " (is the delimiter one of , ; tab | or runs of spaces?)"
                ),
                where=file,
            )
        )
    target_name = _target_column(file, fmt, target)
    features = [n for n in names if n != target_name]
    empty: list[str] = []
    while True:  # a column with no value at all: leave it out and read again
        try:
            table = read_table(table_file, features, target_name, {}, "fill")
            break
        except EmptyColumn as exc:
            if exc.column not in features or len(features) == 1:
                raise
            features.remove(exc.column)
            empty.append(exc.column)
    y = table.y
    if table.rows_read == 0:
        raise ConfigError(
            Problem("the file holds no data rows, only its header; a table needs rows", where=file)
        )
    if y is None or len(y) == 0:
        raise ConfigError(
            Problem(
                f"the target column '{target_name}' has no values (every cell is missing); "
                "choose another with --target",
                where=file,
            )
        )
    columns = [_column(name, table, j, np) for j, name in enumerate(features)]
    columns += [
        ColumnProfile(name, "empty", left_out="every cell is missing: left out") for name in empty
    ]
    columns.sort(key=lambda c: names.index(c.name))
    if all(c.left_out for c in columns):  # keep the model something to learn from, however poor
        for c in columns:
            c.left_out = c.left_out if c.name in empty else None
    profile = TableProfile(
        file,
        kind,
        names,
        fmt.header,
        fmt.delimiter,
        fmt.decimal,
        table.rows_read,
        columns,
        None,
        markers,
        skip_rows,
        skipped,
    )  # type: ignore[arg-type] - the target is set just below
    profile.target = _target(target_name, profile.ref(target_name), table, guess_task(table), np)
    return profile


def _column(name: str, table, j: int, np) -> ColumnProfile:
    column = table.x[:, j]
    if table.kinds[j] == "numeric":
        present = column[~np.isnan(column)]
        if len(present) == 0:
            return ColumnProfile(
                name, "numeric", table.missing[j], left_out="every cell is missing: left out"
            )
        return ColumnProfile(
            name,
            "numeric",
            table.missing[j],
            float(present.min()),
            float(present.max()),
            float(present.mean()),
        )
    categories = table.categories[j]
    codes = column[~np.isnan(column)].astype("int64")
    counts = np.bincount(codes, minlength=len(categories))
    order = sorted(range(len(categories)), key=lambda i: (-counts[i], i))
    profile = ColumnProfile(
        name,
        "categorical",
        table.missing[j],
        categories=[(categories[i], int(counts[i])) for i in order],
        rows=len(codes),
    )
    if len(categories) > ID_SHARE * len(codes) and _free_text(categories):
        profile.kind = "text"  # read by a vectorizer: a column of documents, not categories
    elif len(categories) > max(ID_MIN, ID_SHARE * len(codes)):
        profile.left_out = (
            f"categorical, {len(categories):,} distinct values in {len(codes):,} rows: "
            "an id or free text? left out"
        )
    return profile


def _free_text(values: list[str]) -> bool:
    """Whether a column's distinct values read as documents: `FREE_TEXT` characters on
    average, most with a space."""
    sample = values[:500]
    if not sample:
        return False
    mean = sum(len(v) for v in sample) / len(sample)
    return mean >= FREE_TEXT and sum(" " in v.strip() for v in sample) > 0.8 * len(sample)


def _target(name: str, ref, table, task: str, np) -> TargetProfile:
    y = table.y
    dropped = int(table.dropped.get("missing target") or 0)
    if task == "classification":
        labels, counts = np.unique(y.astype(str) if y.dtype.kind in "OU" else y, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return TargetProfile(
            name,
            ref,
            task,
            table.target_kind == "text",
            classes=[(str(labels[i]), int(counts[i])) for i in order],
            labels=[str(v) for v in labels],
            distinct=len(labels),
            dropped=dropped,
        )
    values = y.astype("float64")
    return TargetProfile(
        name,
        ref,
        task,
        False,
        low=float(values.min()),
        high=float(values.max()),
        mean=float(values.mean()),
        distinct=len(np.unique(values)),
        dropped=dropped,
    )


def _target_column(file: str, fmt, target: str | int | None) -> str:
    """The name of the column `--target` means: a name, or a position (an int, or text like '3' or '-1')."""
    names = fmt.names
    if target is None:
        return names[-1]
    if isinstance(target, str) and target in names:
        return target
    position = (
        target
        if isinstance(target, int)
        else (int(target) if re.fullmatch(r"[+-]?\d+", target.strip()) else None)
    )
    if position is not None:
        found = fmt.column(position)
        if found is not None:
            return found
        raise ConfigError(
            Problem(
                f"--target {position} is past the file's {len(names)} columns; give 0 to {len(names) - 1}, "
                "or -1 for the last",
                where=file,
            )
        )
    hint = did_you_mean(target, names)
    if fmt.kind == "csv" and not fmt.header:
        hint += "; the file has no header row, so give --target as a position (0 is the first column, -1 the last)"
    raise ConfigError(
        Problem(
            f"no column '{target}' for --target{hint}; the columns are: {fmt.shown()}", where=file
        )
    )


__all__ = ["ColumnProfile", "TableProfile", "TargetProfile", "profile_table"]
