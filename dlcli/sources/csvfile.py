"""CSV tables: `data.source: csv` with `path:` (and `test_path:`), `target:` and `features:`.

Every data CSV dlcli reads goes through `read_rows`: training files, `evaluate --data`
files and `predict` inputs (by column name, or by position in a file without a header). It
reads only regular files (never a FIFO or /dev/zero), as UTF-8 with or without a byte-order
mark, keeps each row's line number, and refuses a line or a cell too long to be a table's.
Features are numbers that stay finite as float32; the target may be text (classes) or
numbers. A bad cell is a ConfigError naming `file:line` and the column.
"""

from __future__ import annotations

import csv
import math

import numpy as np

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.sources.base import FLOAT32_MAX, Loaded, Source, in_float32, numeric_features
from dlcli.sources.files import NOT_FOUND, data_file, sha256_file

MAX_LINE = 16 << 20  # characters in one line: a file with no line breaks is not a table


class CsvFile(Source):
    names = ("csv",)

    def load(self, config) -> Loaded:
        d = config.data
        _check_features(config)
        where = config.where(("data", "target"))
        x, y, names = read_csv(d.path, d.target, d.features, where)
        files = {d.path: sha256_file(d.path)}
        x_test = y_test = None
        if d.test_path:
            x_test, y_test, _ = read_csv(d.test_path, d.target, names, where)
            files[d.test_path] = sha256_file(d.test_path)
        return Loaded(x=x, y=y, x_test=x_test, y_test=y_test, feature_names=names, files=files)


def _check_features(config) -> None:
    """data.features must not list the target (the model would see its answer) or a column twice."""
    d = config.data
    for i, name in enumerate(d.features or []):
        if name == d.target:
            raise ConfigError(config.problem(("data", "features", i), (
                f"the target '{name}' is also listed as a feature; the model must not see its target, "
                "so remove it from data.features"
            )))
        if name in d.features[:i]:
            raise ConfigError(config.problem(("data", "features", i), f"feature '{name}' is listed twice; remove one"))


def read_rows(path: str) -> list[tuple[int, list[str]]]:
    """The file's non-blank rows as (line number, cells as written); a ConfigError naming the
    file (and line) when it cannot be read."""
    data_file(path)
    rows, line = [], 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(_lines(handle, path))
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((line + 1, row))
                line = reader.line_num
    except csv.Error as exc:
        raise ConfigError(Problem(_csv_error(exc), where=f"{path}:{reader.line_num}")) from None
    except FileNotFoundError:  # removed since the check
        raise ConfigError(Problem(NOT_FOUND, where=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=path)) from None
    return rows


def _lines(handle, path: str):
    """The handle's lines, each read at most MAX_LINE characters at a time."""
    for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), ""), start=1):
        if len(line) > MAX_LINE:
            raise ConfigError(Problem(
                f"the line is over {MAX_LINE:,} characters long; this is not a CSV table with one row per line",
                where=f"{path}:{number}",
            ))
        yield line


def _csv_error(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return (
            f"a cell is over {csv.field_size_limit():,} characters, too large to be a number or a label; "
            "check for a quote (\") that is never closed, or give a CSV table"
        )
    return f"not a readable CSV row ({exc}); fix the row"


def _check_header(header: list[str], path: str, line: int) -> None:
    """Each column named once: a duplicated name would be read from one column silently."""
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise ConfigError(Problem(
                f"column '{name}' appears twice in the header (columns {seen[name]} and {position}); rename one",
                where=f"{path}:{line}",
            ))
        seen[name] = position


def read_csv(path: str, target: str | None, features: list[str] | None, config_where: str = "") -> tuple:
    """Numeric features (and the target column, when named) of a CSV with a header.

    Returns (x float32 array, y array or None, feature names).
    """
    rows = read_rows(path)
    if len(rows) < 2:
        raise ConfigError(Problem("the CSV has no data rows under its header; add rows", where=path))
    header = [h.strip() for h in rows[0][1]]
    _check_header(header, path, rows[0][0])
    if target is not None and target not in header:
        raise ConfigError(Problem(
            f"no target column '{target}'{did_you_mean(target, header)}; columns are: {', '.join(header)}",
            where=config_where or path,
        ))
    wanted = features if features is not None else [h for h in header if h != target]
    missing = [f for f in wanted if f not in header]
    if missing:
        raise ConfigError(Problem(
            f"no feature column '{missing[0]}'{did_you_mean(missing[0], header)}; columns are: {', '.join(header)}",
            where=config_where or path,
        ))
    if not wanted:
        raise ConfigError(Problem("no feature columns: the CSV holds only the target", where=path))
    index = {h: i for i, h in enumerate(header)}
    x = np.empty((len(rows) - 1, len(wanted)), dtype="float32")
    y = [] if target is not None else None
    for i, (line_no, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ConfigError(Problem(
                f"has {len(row)} fields, the header has {len(header)}; fix the row", where=f"{path}:{line_no}"
            ))
        for j, name in enumerate(wanted):
            x[i, j] = _number(row[index[name]].strip(), f"column '{name}'", f"{path}:{line_no}")
        if y is not None:
            cell = row[index[target]].strip()
            if cell == "":
                raise ConfigError(Problem(f"the target '{target}' is empty; fill or drop the row", where=f"{path}:{line_no}"))
            y.append(cell)
    if y is None:
        return x, None, wanted
    return x, _typed_targets(y, [line for line, _ in rows[1:]], path, target), wanted


def read_features(path: str, feature_names: list[str] | None) -> np.ndarray:
    """Features for `predict`: the model's columns by name, or every column of a file
    without a header (all cells numbers) by position."""
    rows = read_rows(path)
    header = [h.strip() for h in rows[0][1]] if rows else []
    if feature_names and all(f in header for f in feature_names):
        return read_csv(path, None, feature_names)[0]
    if header and all(_is_number(h) for h in header):
        width = len(header)
        values = np.empty((len(rows), width), dtype="float32")
        for i, (line_no, row) in enumerate(rows):
            if len(row) != width:
                raise ConfigError(Problem(f"has {len(row)} fields, the first row has {width}; fix the row",
                                          where=f"{path}:{line_no}"))
            values[i] = [_number(cell.strip(), f"column {j}", f"{path}:{line_no}") for j, cell in enumerate(row, start=1)]
        return numeric_features(values, path)
    missing = [f for f in (feature_names or []) if f not in header]
    raise ConfigError(Problem(
        f"the CSV lacks the model's feature column '{missing[0] if missing else '?'}'; "
        f"expected columns: {', '.join(feature_names or [])}",
        where=path,
    ))


def _number(cell: str, column: str, where: str) -> float:
    """A feature cell as a number that stays finite as float32; `column` names it."""
    if cell == "":
        raise ConfigError(Problem(f"{column} is empty; fill or drop missing values", where=where))
    try:
        value = float(cell)
    except ValueError:
        raise ConfigError(Problem(
            f"{column} holds {cell!r}, not a number; features must be numeric "
            "(encode it, or leave the column out of data.features)",
            where=where,
        )) from None
    if not math.isfinite(value):
        raise ConfigError(Problem(f"{column} is {cell}; fill or drop missing values", where=where))
    if not in_float32(value):
        raise ConfigError(Problem(_out_of_range(column, cell), where=where))
    return value


def _out_of_range(column: str, cell: str) -> str:
    return f"{column} is {cell}, out of float32 range (±{FLOAT32_MAX:.3g}); rescale the column"


def _typed_targets(cells: list[str], lines: list[int], path: str, target: str) -> np.ndarray:
    """Target strings -> int64, float (each finite as float32), or the strings themselves."""
    try:
        ints = [int(c) for c in cells]
        if all(-(2 ** 63) <= v < 2 ** 63 for v in ints):
            return np.asarray(ints, dtype="int64")
    except ValueError:
        pass
    try:
        floats = [float(c) for c in cells]
    except ValueError:
        return np.asarray(cells, dtype=object)
    for value, cell, line in zip(floats, cells, lines):
        if not math.isfinite(value):
            raise ConfigError(Problem(f"the target '{target}' is {cell}; fill or drop the row", where=f"{path}:{line}"))
        if not in_float32(value):
            raise ConfigError(Problem(_out_of_range(f"the target '{target}'", cell), where=f"{path}:{line}"))
    return np.asarray(floats)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
