"""The form of a table file, worked out from its first megabyte: `TableFormat` and `inspect`.

A CSV's delimiter (among `, ; tab |`, or runs of spaces), whether its first row is a header,
its column names and its decimal mark are read off a sample of the file (`SAMPLE_BYTES`, cut
at a line end: `\\n`, `\\r\\n` or `\\r` alone), after the leading lines `data.skip_rows`
skips. A compressed file is refused here, by its magic bytes, before anything parses it. A
Parquet file's form is its schema's column names.

A first line that counts the rows and columns below it, as scikit-learn's bundled CSVs begin
(`150,4,setosa,versicolor,virginica` over rows of four numbers and a class), is neither a
header nor data: it is refused (`LeadLine`, with `data.skip_rows` as the fix) rather than
taken for either (`_counts_line` states the rule). A header cell wrapped in a pair of quotes,
single or double, names the column without them.

This module reads only the sample and never the rest of the file: reading the rows is
`dlcli.data.tables.tablefile.TableFile`'s work (and `whole` / `stream`'s), walking the file
for a line number `diagnostics`'. Of `tables` it imports only `parquet` (a Parquet file's schema).

Example:
    >>> fmt = inspect("adult.csv", header="auto", columns=None, delimiter="auto", missing=["?"])
    >>> fmt.delimiter, fmt.header, fmt.names[:2]
    (',', True, ['age', 'workclass'])
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from dataclasses import asdict, dataclass

import numpy as np

from dlcli.data.sources.datafile import data_file
from dlcli.data.tables.parquet import open_parquet
from dlcli.errors import ConfigError, Problem

SAMPLE_BYTES = 1 << 20  # what `inspect` reads to decide the form
SAMPLE_ROWS = 500
CONSISTENT = 0.9  # share of rows of one width for a delimiter (or the rows under a count line)
CANDIDATES = (",", ";", "\t", "|")
SPACES = " "  # data.delimiter for runs of spaces or tabs (whitespace-aligned files)
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
LINE_END = re.compile(r"\r\n|\r|\n")
# Archives whose bytes pyarrow's piece reader would take for text: named, never parsed.
COMPRESSED = {
    b"\x1f\x8b": "gzip-compressed",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"PK\x03\x04": "zip archive",
}
UNPACK = {
    "gzip-compressed": "gunzip -k {path}",
    "bzip2-compressed": "bunzip2 -k {path}",
    "xz-compressed": "unxz -k {path}",
    "zstd-compressed": "unzstd {path}",
    "zip archive": "unzip {path}",
}


@dataclass
class TableFormat:
    """How a table file is written: what `evaluate --data` and `predict` read files as.
    A run's preprocessing.json keeps it (`to_dict` / `from_dict`): its fields stay as they are."""

    kind: str  # csv | parquet
    names: list[str]  # every column, in order
    header: bool = False  # csv: the first row names the columns (and is skipped)
    delimiter: str = ","  # csv: the character, or ' ' for runs of spaces
    decimal: str = "."  # csv: ',' in files that write 3,14
    quoted: bool = True  # csv: quotes seen (a quoted cell may span lines)
    skip_rows: int = 0  # csv: leading lines skipped before the header or the first row

    @property
    def quotes_span_lines(self) -> bool:
        """Whether a quoted cell may hold a line end: quotes were seen, and cells are split on
        one character (a whitespace-aligned file knows no quotes)."""
        return self.quoted and self.delimiter != SPACES

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


class LeadLine(ConfigError):
    """The first line read (after `skip_rows` skipped lines) counts the rows and columns below
    it: neither a header nor data. `line` is its number in the file, `skip` the `skip_rows`
    that skips it, `why` what gives it away; the message's fix is `data.skip_rows: skip`."""

    def __init__(self, path: str, line: int, skip: int, text: str, why: str):
        self.path, self.line, self.skip, self.why = path, line, skip, why
        self.text = text if len(text) <= 60 else text[:57] + "..."
        super().__init__(self.problem(f"set data.skip_rows: {skip} to skip it"))

    def problem(self, fix: str) -> Problem:
        """The problem, with `fix` saying what to do."""
        return Problem(
            f"this line ({self.text}) {self.why}: a count line such as scikit-learn's CSVs "
            f"begin with, neither a header nor data; {fix}",
            where=f"{self.path}:{self.line}",
        )


def inspect(
    path: str,
    header="auto",
    columns=None,
    delimiter: str = "auto",
    missing=(),
    kind: str = "csv",
    shown: str | None = None,
    skip_rows: int = 0,
) -> TableFormat:
    """The form of a table file: column names, header, delimiter, decimal mark.

    Args:
        path: the file (checked to be a regular file).
        header: True, False or 'auto' (a first row of text over columns of numbers).
        columns: names for the columns, or None (the header's, or positions '0', '1', ...).
        delimiter: the character, ' ' for runs of spaces, or 'auto'.
        missing: the markers of missing cells (never taken for a header).
        kind: 'csv' or 'parquet'.
        shown: where a problem with `columns` points (the config's line).
        skip_rows: csv: leading lines skipped before the header or the first row.

    A first row that counts the rows and columns below it is a `LeadLine` (exit 2), whatever
    `header` says.
    """
    data_file(path)
    if kind == "parquet":
        names = open_parquet(path).schema_arrow.names
        _check_names(names, path)
        return TableFormat("parquet", [str(n) for n in names])
    text = sample(path, skip_rows)
    if not text.strip():
        if skip_rows and sample(path).strip():
            raise ConfigError(
                Problem(
                    f"data.skip_rows: {skip_rows} skips every line the file holds (or its first "
                    f"{SAMPLE_BYTES:,} bytes); a table needs rows after the skipped lines",
                    where=path,
                )
            )
        raise ConfigError(Problem("the file is empty; a table needs rows", where=path))
    sep = delimiter if delimiter != "auto" else _sniff_delimiter(text)
    rows = sample_rows(text, sep)
    if not rows:
        raise ConfigError(Problem("the file holds no rows", where=path))
    first_line = skip_rows + _first_row_line(text, sep)
    markers = set(missing)
    why = _counts_line(rows, _lines_below(text), os.path.getsize(path) <= SAMPLE_BYTES, markers)
    if why:
        shown_line = (" " if sep == SPACES else sep).join(c.strip() for c in rows[0])
        raise LeadLine(path, first_line, first_line, shown_line, why)
    width = len(rows[0])
    has_header = _has_header(rows, markers) if header == "auto" else bool(header)
    if columns is not None:
        if len(columns) != width:
            raise ConfigError(
                Problem(
                    f"data.columns names {len(columns)} columns but the file's first row has {width}; "
                    "name every column, in order",
                    where=shown or path,
                )
            )
        names = list(columns)
    elif has_header:
        names = [unquoted(cell) or str(i) for i, cell in enumerate(rows[0])]
        _check_names(names, f"{path}:{first_line}")
    else:
        names = [str(i) for i in range(width)]
    body = rows[1:] if has_header else rows
    decimal = "," if sep != "," and _decimal_comma(body) else "."
    return TableFormat("csv", names, has_header, sep, decimal, '"' in text, skip_rows)


def numbers_in_sample(path: str, fmt: TableFormat, wanted: list[str], markers) -> set[str]:
    """The columns of `wanted` whose present cells in the sample are all numbers (what the
    CSV reader is first asked to parse as numbers)."""
    rows = sample_rows(sample(path, fmt.skip_rows), fmt.delimiter)[1 if fmt.header else 0 :]
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


def unquoted(cell: str) -> str:
    """A header cell, trimmed, without a pair of quotes (single or double) wrapping it whole:
    `'sepal'` names the column sepal (pyarrow and Python's csv only take double quotes off)."""
    cell = cell.strip()
    if len(cell) >= 2 and cell[0] == cell[-1] and cell[0] in "'\"":
        return cell[1:-1].strip()
    return cell


def is_number(text: str, decimal: str = ".") -> bool:
    if decimal != ".":
        text = text.replace(decimal, ".", 1)
    return re.match(NUMBER, text) is not None


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


# ---------------------------------------------------------------- the sample


def sample(path: str, skip_rows: int = 0) -> str:
    """The file's first SAMPLE_BYTES as text, cut at a line end, less its first `skip_rows`
    lines. `inspect` and the readers both look at it: it is read once per version of the file."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=path)) from None
    text = _read_sample(str(path), stat.st_mtime_ns, stat.st_size)
    if skip_rows:
        for count, end in enumerate(LINE_END.finditer(text), start=1):
            if count == skip_rows:
                return text[end.end() :]
        return ""
    return text


def lead_bytes(path: str, lines: int) -> int:
    """The byte offset where line `lines` + 1 starts: the file's first `lines` lines skipped,
    each ended as pyarrow's `skip_rows` ends one (`\\n`, `\\r\\n` or `\\r`, quotes or not)."""
    offset = 0
    with open(path, "rb") as handle:
        while lines > 0:
            block = handle.read(SAMPLE_BYTES)
            if block.endswith(b"\r"):
                block += handle.read(1)  # a \r\n cut by the read ends one line
            if not block:
                break
            ends = line_ends(np.frombuffer(block, dtype=np.uint8))
            if len(ends) >= lines:
                return offset + int(ends[lines - 1]) + 1
            lines -= len(ends)
            offset += len(block)
    return offset


@functools.lru_cache(maxsize=4)
def _read_sample(path: str, mtime_ns: int, size: int) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(SAMPLE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=path)) from None
    packed = next((name for magic, name in COMPRESSED.items() if raw.startswith(magic)), None)
    if packed:
        raise ConfigError(
            Problem(
                f"is a {packed} file; dlcli reads tables as plain CSV text or Parquet: unpack it first "
                f"({UNPACK[packed].format(path=path)}), or save it as Parquet",
                where=path,
            )
        )
    whole = len(raw) <= SAMPLE_BYTES
    if not whole:
        end = max(raw.rfind(b"\n", 0, SAMPLE_BYTES), raw.rfind(b"\r", 0, SAMPLE_BYTES))
        if end < 0:
            raise ConfigError(
                Problem(
                    f"the first line is over {SAMPLE_BYTES:,} bytes long; this is not a table with one row per line",
                    where=f"{path}:1",
                )
            )
        raw = raw[: end + 1]
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = len(line_ends(np.frombuffer(raw[: exc.start] + b"\0", dtype=np.uint8))) + 1
        raise ConfigError(
            Problem(
                f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8",
                where=f"{path}:{line}",
            )
        ) from None


def sample_rows(text: str, sep: str) -> list[list[str]]:
    """The sample's non-blank rows (at most SAMPLE_ROWS + 1), split on `sep`."""
    if sep == SPACES:
        rows = _split_spaces(text)
    else:
        try:
            rows = _csv_rows(text, sep)
        except csv.Error:
            rows = [line.split(sep) for line in text.splitlines() if line.strip()]
    return rows[: SAMPLE_ROWS + 1]


def _csv_rows(text: str, sep: str) -> list[list[str]]:
    """The sample's non-blank rows as Python's csv module splits them (csv.Error if it can't)."""
    return [
        row for row in csv.reader(_universal(text), delimiter=sep) if any(c.strip() for c in row)
    ]


def _split_spaces(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def _universal(text: str) -> io.StringIO:
    """The sample as lines for Python's csv module, whatever ends them (\\n, \\r\\n or \\r)."""
    return io.StringIO(text, newline=None)


def _first_row_line(text: str, sep: str) -> int:
    """The line the first non-blank row of the sample starts on (where a header's problem is
    shown), counted as `diagnostics` counts lines."""
    if sep == SPACES:
        return next(
            (number for number, line in enumerate(_universal(text), start=1) if line.strip()), 1
        )
    reader = csv.reader(_universal(text), delimiter=sep)
    line = 0
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                return line + 1
            line = reader.line_num
    except csv.Error:
        pass
    return 1


def _check_names(names: list, where: str) -> None:
    """Each column named once: a duplicated name would be read from one column silently."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise ConfigError(
                Problem(
                    f"column '{name}' appears twice in the header (columns {seen[name]} and {position}); rename one",
                    where=where,
                )
            )
        seen[name] = position


# ---------------------------------------------------------------- deciding the form


def _sniff_delimiter(text: str) -> str:
    """The candidate that splits the sample's rows into the same number (>1) of cells most
    consistently; runs of spaces when none does."""
    best, best_score = ",", (0.0, 0)
    for sep in CANDIDATES:
        try:
            rows = _csv_rows(text, sep)
        except csv.Error:
            continue
        score = _consistency(rows[:SAMPLE_ROWS])
        if score > best_score:
            best, best_score = sep, score
    if best_score[1] > 1 and best_score[0] >= CONSISTENT:
        return best
    spaced = _consistency(_split_spaces(text)[:SAMPLE_ROWS])
    if spaced[1] > 1 and spaced[0] >= CONSISTENT:
        return SPACES
    return best


def _consistency(rows: list[list[str]]) -> tuple[float, int]:
    """(share of rows with the most common width, that width); (0, 0) for widths of 1."""
    if not rows:
        return 0.0, 0
    widths = np.bincount([len(r) for r in rows])
    width = int(widths.argmax())
    return (float(widths[width]) / len(rows), width) if width > 1 else (0.0, 0)


def _lines_below(text: str) -> int:
    """The non-blank lines of the sample after its first non-blank one."""
    return max(sum(1 for line in LINE_END.split(text) if line.strip()) - 1, 0)


def _counts_line(rows: list[list[str]], lines_below: int, whole: bool, markers) -> str | None:
    """What shows that the first row counts the rows and columns below it, or None when it
    does not. It does when its cells are whole numbers (digits only, at least one) followed
    by cells that are not numbers (labels, or empty), the rows below (two or more) are of one
    width W (CONSISTENT of them), each label stands over a column of numbers (or past the
    rows' last column: a data row's text stands over text), and either
      - its first number is the count of the lines below it (at least the sample's, when
        the sample is not the whole file), its second W - 1 or W, the columns, and it holds
        a label or another number of cells than W (iris.csv:
        `150,4,setosa,versicolor,virginica` over 150 rows of 5; `150,4` over rows of 5), or
      - the row has another number of cells than W and holds a label after its numbers
        (`178,13,class_0,class_1,class_2` over rows of 14, however many rows follow).
    A header of numbers over rows of its own width (`1,2,3,label`, `2019,2020,region`)
    is none: its numbers do not count the file's rows."""
    first, body = [c.strip() for c in rows[0]], rows[1:]
    share, width = _consistency(body[:SAMPLE_ROWS])
    if len(body) < 2 or share < CONSISTENT:
        return None
    k = next((i for i, c in enumerate(first) if not c.isdigit() or not c.isascii()), len(first))
    labels = [c for c in first[k:] if c]
    if k == 0 or any(is_number(c) or is_number(c, ",") for c in labels):
        return None
    for j in range(k, min(len(first), width)):
        below = [r[j].strip() for r in body if j < len(r) and r[j].strip() not in markers]
        if first[j] and not all(is_number(c) or is_number(c, ",") for c in below):
            return None
    counts = [int(c) for c in first[:k]]
    rows_counted = counts[0] == lines_below if whole else counts[0] >= lines_below
    unlike_rows = bool(labels) or len(first) != width  # never a row of numbers like the rest
    if k >= 2 and rows_counted and counts[1] in (width - 1, width) and unlike_rows:
        return f"counts the {counts[0]} rows and {counts[1]} columns below it"
    if len(first) != width and labels:
        return f"starts with counts and has {len(first)} fields where the rows below have {width}"
    return None


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
        if (
            column_of_numbers
            and cell.strip() not in markers
            and not (is_number(cell.strip()) or is_number(cell.strip(), ","))
        ):
            return True
        if not column_of_numbers and len(below) >= 4 and len(set(below)) <= len(below) // 2:
            repeating.append(cell.strip() in below)
    if repeating and not any(repeating) and len({c.strip() for c in first}) == len(first):
        return True
    if numeric_column:
        return False
    cells = [c.strip() for c in first]
    return len(set(cells)) == len(cells) and all(
        c and all(j >= len(r) or r[j].strip() != c for r in body) for j, c in enumerate(cells)
    )


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
