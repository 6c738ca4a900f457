"""How `dlcli serve` reads a request, in-process and fast: a table's rows by column name
(`dlcli.data.tables.rows`), each mistake naming its row and field. The server itself, over
real HTTP, is tested in test_serve.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.data.tables.preprocessing import TablePreprocessing
from dlcli.data.tables.rows import RowProblem, encode_rows


def preprocessing(on_missing: str = "fill", decimal: str = ".") -> TablePreprocessing:
    return TablePreprocessing.from_json(
        {
            "format": {
                "kind": "csv",
                "names": ["age", "city", "income"],
                "header": True,
                "delimiter": ";" if decimal == "," else ",",
                "decimal": decimal,
                "quoted": False,
                "skip_rows": 0,
            },
            "target": "income",
            "missing": ["?", "NA"],
            "on_missing": on_missing,
            "normalize": "standard",
            "features": [
                {"name": "age", "type": "numeric", "mean": 40.0, "std": 10.0},
                {"name": "city", "type": "categorical", "categories": ["Oslo", "Lima", "7"]},
            ],
        },
        "preprocessing.json",
    )


def test_values_become_the_models_input_as_a_file_would():
    x, unseen = encode_rows(
        preprocessing(),
        [
            {"age": 31, "city": "Lima"},
            {"age": " 52.5 ", "city": " Oslo "},  # text of a number, cells trimmed
            {"age": None, "city": "?"},  # missing: NaN (filled in the model), index 0
            {"age": "NA", "city": None},
            {"age": 20, "city": 7},  # a number stands for its text
            {"age": 20, "city": "Paris", "income": "high"},  # never seen; the target ignored
            {"age": 21, "city": "Paris"},
            {"age": 22, "city": "Rome"},
        ],
    )
    assert x.dtype == np.float32 and x.shape == (8, 2)
    assert x[:2].tolist() == [[31.0, 2.0], [52.5, 1.0]]
    assert math.isnan(x[2, 0]) and x[2, 1] == 0.0
    assert math.isnan(x[3, 0]) and x[3, 1] == 0.0
    assert x[4, 1] == 3.0 and x[5, 1] == 0.0
    assert unseen == {"city": ["Paris", "Rome"]}


def test_a_decimal_comma_is_read_as_the_training_file_was():
    x, _ = encode_rows(preprocessing(decimal=","), [{"age": "41,5", "city": "Oslo"}])
    assert x[0, 0] == pytest.approx(41.5)


@pytest.mark.parametrize(
    ("rows", "row", "field", "words"),
    [
        ([{"age": 1, "city": "Oslo"}, {"age": 2}], 1, "city", "missing"),
        ([{"age": 1, "city": "Oslo", "zip": 1}], 0, "zip", "is not a column"),
        ([{"age": "forty", "city": "Oslo"}], 0, "age", "must be a number"),
        ([{"age": True, "city": "Oslo"}], 0, "age", "must be a number"),
        ([{"age": "NaN", "city": "Oslo"}], 0, "age", "not a finite number"),
        ([{"age": "-inf", "city": "Oslo"}], 0, "age", "not a finite number"),
        ([{"age": 1e300, "city": "Oslo"}], 0, "age", "not a finite number"),
        ([{"age": 1, "city": {"name": "Oslo"}}], 0, "city", "must be a category"),
        ([{"age": 1, "city": "Oslo"}, ["age", 1]], 1, None, "must be an object"),
    ],
)
def test_each_mistake_names_its_row_and_field(rows, row, field, words):
    with pytest.raises(RowProblem) as caught:
        encode_rows(preprocessing(), rows)
    assert (caught.value.row, caught.value.field) == (row, field)
    assert words in caught.value.message


def test_a_run_that_refuses_missing_cells_refuses_them_here_too():
    with pytest.raises(RowProblem) as caught:
        encode_rows(preprocessing("error"), [{"age": 1, "city": "Oslo"}, {"age": 2, "city": "?"}])
    assert (caught.value.row, caught.value.field) == (1, "city")
    assert "data.on_missing: error" in caught.value.message


def test_rows_must_be_a_list():
    with pytest.raises(RowProblem, match="must be a list"):
        encode_rows(preprocessing(), {"age": 1})
