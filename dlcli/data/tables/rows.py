"""Rows given as values by column name (a JSON object per row, as `dlcli serve` takes them)
turned into a table run's model input with the run's own preprocessing, as `predict` turns
the same cells of a file.

A numeric column takes a number, or its text ("39", with the file's decimal mark); null, an
empty string or one of the run's missing markers is a missing cell, filled inside the model
as in training. A categorical column takes its category as text (a number stands for its
text: 7 is "7"); a missing one gets the missing index, one never seen in training the
unknown index, and is reported. A text column takes its document.

Every mistake is a `RowProblem` naming the row and the field: a missing or extra column, a
wrong type, a value that is not a finite number.

Example:
    >>> x, unseen = encode_rows(prep, [{"age": 39, "workclass": "State-gov", ...}])
    >>> x.shape, unseen
    ((1, 10), {})
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a server of an array run reads no table: it need not import the readers
    from dlcli.data.tables.preprocessing import TablePreprocessing

FLOAT32_MAX = float(np.finfo("float32").max)


class RowProblem(ValueError):
    """A client's row that cannot be read: `row` (from 0), `field` (a column, or None) and
    what is wrong, as one phrase."""

    def __init__(self, message: str, row: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message, self.row, self.field = message, row, field

    def __str__(self) -> str:
        at = [f"row {self.row}"] if self.row is not None else []
        at += [f"field '{self.field}'"] if self.field is not None else []
        return f"{', '.join(at)}: {self.message}" if at else self.message


def encode_rows(prep: TablePreprocessing, rows) -> tuple[np.ndarray, dict[str, list]]:
    """(model input, unseen categories: column -> values, in the order met) of `rows`, a list
    of objects mapping each feature column to its raw value."""
    if not isinstance(rows, list):
        raise RowProblem("'rows' must be a list of objects, one per row (column: value)")
    features = prep.features
    names = [f.name for f in features]
    allowed = {*names, prep.target}  # a row may carry its target, which is ignored
    markers = {m.strip() for m in prep.missing} | {""}
    refuse_missing = prep.on_missing == "error"
    decimal = prep.format.decimal or "."
    positions = [
        {c: i + 1 for i, c in enumerate(f.categories)} if f.type == "categorical" else None
        for f in features
    ]
    x = np.empty((len(rows), len(features)), dtype="float32")
    texts = [] if prep.text_index is not None else None
    unseen: dict[str, dict] = {}
    for r, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RowProblem("must be an object of column: value", r)
        if len(row) != len(names) or any(k not in allowed for k in row):
            _check_columns(row, names, allowed, r)
        for j, feature in enumerate(features):
            value = row[feature.name]
            if feature.type == "numeric":
                number = _number(value, markers, decimal, r, feature.name)
                if refuse_missing and math.isnan(number):
                    raise _missing(r, feature.name)
                x[r, j] = number
            elif feature.type == "categorical":
                text = _category(value, r, feature.name)
                if text in markers:
                    if refuse_missing:
                        raise _missing(r, feature.name)
                    x[r, j] = 0.0
                    continue
                index = positions[j].get(text, 0)
                if not index:
                    unseen.setdefault(feature.name, {})[text] = None
                x[r, j] = index
            else:  # a text column: its vector goes after the table's columns
                if value is not None and not isinstance(value, str):
                    raise RowProblem(f"must be text, got {_kind(value)}", r, feature.name)
                texts.append(value or "")
                x[r, j] = 0.0
    if texts is not None:
        vectors = prep.text.vectorize(np.asarray(texts, dtype=object))
        x = np.concatenate([x, vectors.astype("float32", copy=False)], axis=1)
    return x, {column: list(values) for column, values in unseen.items()}


def _check_columns(row: dict, names: list[str], allowed: set, r: int) -> None:
    for name in names:
        if name not in row:
            raise RowProblem(
                f"missing; every row gives all {len(names)} columns ({', '.join(names)}), "
                "null for a missing value",
                r,
                name,
            )
    extra = next((k for k in row if k not in allowed), None)
    if extra is not None:  # else the row only carries its target, which is ignored
        raise RowProblem(f"is not a column of this model; it reads {', '.join(names)}", r, extra)


def _number(value, markers: set, decimal: str, r: int, name: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RowProblem(f"must be a number, got {_kind(value)}", r, name)
    if isinstance(value, str):
        text = value.strip()
        if text in markers:
            return math.nan
        try:
            value = float(text.replace(decimal, ".") if decimal != "." else text)
        except ValueError:
            raise RowProblem(f"must be a number, got {_shown(value)}", r, name) from None
    number = float(value)
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise RowProblem(
            f"{_shown(value)} is not a finite number; send null for a missing value", r, name
        )
    return number


def _category(value, r: int, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise RowProblem(f"must be a category (text), got {_kind(value)}", r, name)


def _missing(r: int, name: str) -> RowProblem:
    return RowProblem(
        "is missing, and this run refuses missing cells (data.on_missing: error)", r, name
    )


def _kind(value) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", str: "text"}.get(
        type(value), type(value).__name__
    )


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["RowProblem", "encode_rows"]
