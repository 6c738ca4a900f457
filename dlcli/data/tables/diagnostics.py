"""Line numbers, on the way to an error: a CSV walked again with Python's csv module.

pyarrow parses fast but knows no line numbers. Where a problem needs one (a stray cell, a
row with the wrong number of cells, an unclosed quote, a line or a cell too long, text that
is not UTF-8), the file is walked row by row here (`walk`), which only ever happens once a
problem is known to exist. `TableFile` (`dlcli.data.tables.tablefile`) offers these as its
methods (`line_of`, `cell_at`, `diagnose`); its callers never call this module.

Imports `form` (the delimiter of a whitespace-aligned file) of `tables`, and no pyarrow.
"""

from __future__ import annotations

import csv
import itertools

from dlcli.data.sources.datafile import NOT_FOUND, data_file
from dlcli.data.tables.form import SPACES, TableFormat
from dlcli.errors import ConfigError, Problem, first_line

MAX_LINE = 16 << 20  # characters in one line: a file with no line breaks is not a table


def walk(path: str, fmt: TableFormat):
    """(line, cells) of each non-blank row of a CSV, header included, walked with Python's
    csv module: the slow reading that knows line numbers. The `fmt.skip_rows` leading lines
    are passed over, and counted: a line number is the file's."""
    data_file(path)
    skip = fmt.skip_rows
    with open(path, newline="", encoding="utf-8-sig") as handle:
        lines = _lines(handle, path)
        for _ in itertools.islice(lines, skip):
            pass
        if fmt.delimiter == SPACES:
            for number, line in enumerate(lines, start=skip + 1):
                if line.strip():
                    yield number, line.split()
            return
        reader = csv.reader(lines, delimiter=fmt.delimiter)
        line = 0
        try:
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield skip + line + 1, row
                line = reader.line_num
        except csv.Error as exc:
            raise ConfigError(
                Problem(_csv_error(exc), where=f"{path}:{skip + reader.line_num}")
            ) from None


def line_of(path: str, fmt: TableFormat, row: int) -> int | None:
    """The line where data row `row` (0-based, after any header) starts."""
    skip = 1 if fmt.header else 0
    try:
        for index, (line, _) in enumerate(walk(path, fmt)):
            if index == row + skip:
                return line
    except (ConfigError, OSError, UnicodeDecodeError):
        return None
    return None


def cell_at(path: str, fmt: TableFormat, row: int, name: str) -> str | None:
    """The text of column `name` in data row `row` (None for Parquet)."""
    if fmt.kind != "csv" or name not in fmt.names:
        return None
    skip = 1 if fmt.header else 0
    position = fmt.names.index(name)
    try:
        for index, (_, cells) in enumerate(walk(path, fmt)):
            if index == row + skip:
                return cells[position].strip() if position < len(cells) else None
    except (ConfigError, OSError, UnicodeDecodeError):
        return None
    return None


def diagnose(path: str, fmt: TableFormat, exc: Exception) -> ConfigError:
    """What is wrong where, for a file pyarrow could not read: a row with the wrong number
    of cells, an unclosed quote, a line or cell too long, text that is not UTF-8."""
    width = len(fmt.names)
    what = "the header has" if fmt.header else "the first row has"
    try:
        for line, row in walk(path, fmt):
            if len(row) != width:
                return ConfigError(
                    Problem(
                        f"has {len(row)} fields, {what} {width}; fix the row",
                        where=f"{path}:{line}",
                    )
                )
    except ConfigError as error:
        return error
    except FileNotFoundError:
        return ConfigError(Problem(NOT_FOUND, where=path))
    except (OSError, UnicodeDecodeError) as error:
        return ConfigError(Problem(f"cannot read the data file: {error}", where=path))
    return ConfigError(Problem(f"cannot read the table: {first_line(exc)[:300]}", where=path))


def _lines(handle, path: str):
    """The handle's lines, each read at most MAX_LINE characters at a time."""
    for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), ""), start=1):
        if len(line) > MAX_LINE:
            raise ConfigError(
                Problem(
                    f"the line is over {MAX_LINE:,} characters long; this is not a CSV table with one row per line",
                    where=f"{path}:{number}",
                )
            )
        yield line


def _csv_error(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return (
            f"a cell is over {csv.field_size_limit():,} characters, too large to be a number or a label; "
            'check for a quote (") that is never closed, or give a CSV table'
        )
    return f"not a readable CSV row ({exc}); fix the row"
