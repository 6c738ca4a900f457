"""CSV tables: `data.source: csv` with `path:` (and `test_path:`), `target:` and `features:`.

Every data CSV dlcli reads goes through `read_rows` (over `dlcli.files.read_csv_rows`, which
reads the run folder's CSV files too): training files, `evaluate --data` files and
`predict` inputs (by column name, or by position in a file without a header). Features are
numbers; the target may be text (classes) or numbers. A bad cell is a ConfigError naming
`file:line` and the column.
"""

from __future__ import annotations

import csv
import math

import numpy as np

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.files import read_csv_rows
from dlcli.sources.base import Loaded, Source, numeric_features
from dlcli.sources.files import NOT_FOUND, sha256_file


class CsvFile(Source):
    names = ("csv",)

    def load(self, config) -> Loaded:
        d = config.data
        where = config.where(("data", "target"))
        x, y, names = read_csv(d.path, d.target, d.features, where)
        files = {d.path: sha256_file(d.path)}
        x_test = y_test = None
        if d.test_path:
            x_test, y_test, _ = read_csv(d.test_path, d.target, names, where)
            files[d.test_path] = sha256_file(d.test_path)
        return Loaded(x=x, y=y, x_test=x_test, y_test=y_test, feature_names=names, files=files)


def read_rows(path: str) -> list[list[str]]:
    """The file's non-blank rows, cells as written; a ConfigError when it cannot be read."""
    try:
        return [row for row in read_csv_rows(path) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise ConfigError(Problem(NOT_FOUND, where=path)) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(Problem(f"cannot read the data file: {exc}", where=path)) from None


def read_csv(path: str, target: str | None, features: list[str] | None, config_where: str = "") -> tuple:
    """Numeric features (and the target column, when named) of a CSV with a header.

    Returns (x float32 array, y array or None, feature names).
    """
    rows = read_rows(path)
    if len(rows) < 2:
        raise ConfigError(Problem("the CSV has no data rows under its header; add rows", where=path))
    header = [h.strip() for h in rows[0]]
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
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(Problem(
                f"has {len(row)} fields, the header has {len(header)}; fix the row", where=f"{path}:{line_no}"
            ))
        for j, name in enumerate(wanted):
            x[line_no - 2, j] = _number(row[index[name]].strip(), name, f"{path}:{line_no}")
        if y is not None:
            cell = row[index[target]].strip()
            if cell == "":
                raise ConfigError(Problem(f"the target '{target}' is empty; fill or drop the row", where=f"{path}:{line_no}"))
            y.append(cell)
    return x, (None if y is None else _typed_targets(y)), wanted


def read_features(path: str, feature_names: list[str] | None) -> np.ndarray:
    """Features for `predict`: the model's columns by name, or every column of a file
    without a header (all cells numbers) by position."""
    rows = read_rows(path)
    header = [h.strip() for h in rows[0]] if rows else []
    if feature_names and all(f in header for f in feature_names):
        return read_csv(path, None, feature_names)[0]
    if header and all(_is_number(h) for h in header):
        width = len(header)
        for line_no, row in enumerate(rows, start=1):
            if len(row) != width:
                raise ConfigError(Problem(f"has {len(row)} fields, the first row has {width}; fix the row",
                                          where=f"{path}:{line_no}"))
        try:
            values = np.asarray(rows, dtype="float64")
        except ValueError as exc:
            raise ConfigError(Problem(f"a file without a header must hold only numbers ({exc})", where=path)) from None
        return numeric_features(values, path)
    missing = [f for f in (feature_names or []) if f not in header]
    raise ConfigError(Problem(
        f"the CSV lacks the model's feature column '{missing[0] if missing else '?'}'; "
        f"expected columns: {', '.join(feature_names or [])}",
        where=path,
    ))


def _number(cell: str, column: str, where: str) -> float:
    if cell == "":
        raise ConfigError(Problem(f"column '{column}' is empty; fill or drop missing values", where=where))
    try:
        value = float(cell)
    except ValueError:
        raise ConfigError(Problem(
            f"column '{column}' holds {cell!r}, not a number; features must be numeric "
            "(encode it, or leave the column out of data.features)",
            where=where,
        )) from None
    if not math.isfinite(value):
        raise ConfigError(Problem(f"column '{column}' is {cell}; fill or drop missing values", where=where))
    return value


def _typed_targets(cells: list[str]) -> np.ndarray:
    """Target strings -> ints, floats, or the strings themselves."""
    for kind in (int, float):
        try:
            return np.asarray([kind(c) for c in cells])
        except ValueError:
            continue
    return np.asarray(cells, dtype=object)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
