"""Tables as people have them: no header, text categories, '?' for missing,
';' or runs of spaces between cells, Parquet; preprocessing fitted on the training split
and applied by `evaluate --data` and `predict` to raw rows.

Most tables here come from configs/data/census.csv (rows like the UCI adult files: no
header, a space after each comma, '?' cells, '<=50K' / '>50K' labels), where the income
depends on the text columns: a model that ignores or mis-encodes them scores about the
majority share (0.77); one that uses them scores above 0.9.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CENSUS, CENSUS_COLUMNS, CONFIGS, run_dlcli

COLUMNS = CENSUS_COLUMNS
SMALL_MODEL = {
    "layers": [
        {"type": "Dense", "units": 32, "activation": "relu"},
        {"type": "Dense", "activation": "softmax"},
    ],
}
QUIET = {"tensorboard": False, "plots": False}


def census_lines(start: int = 0, stop: int | None = None) -> list[str]:
    return CENSUS.read_text().splitlines()[start:stop]


def table_config(path: Path, epochs: int = 2, **data) -> dict:
    """A config for a table at `path` (census columns unless `data` says otherwise)."""
    return {
        "name": "table",
        "seed": 3,
        "data": {
            "source": "csv",
            "path": str(path),
            "target": "income",
            "columns": COLUMNS,
            **data,
        },
        "model": SMALL_MODEL,
        "compile": {"optimizer": {"type": "adam", "learning_rate": 0.003}, "metrics": ["accuracy"]},
        "training": {"epochs": epochs, "batch_size": 64},
        "output": QUIET,
    }


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_json(cli, config: Path, runs: Path, *extra) -> dict:
    result = cli("train", config, "--runs-dir", runs, "--json", "--quiet", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def validate_json(cli, config: Path) -> dict:
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def refused(result, *needles, where: str | None = None) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if where is not None:
        assert lines[0].startswith(f"error: {where}:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def census_run(tmp_path_factory):
    """The shipped census example trained once (fewer epochs, no early stopping)."""
    from typer.testing import CliRunner

    from dlcli.cli import app

    base = tmp_path_factory.mktemp("census")
    config = yaml.safe_load((CONFIGS / "census_table.yaml").read_text())
    config["data"]["path"] = str(CENSUS)
    config["training"] = {"epochs": 8, "batch_size": 64}
    config["output"] = QUIET
    path = write_yaml(base / "census.yaml", config)
    result = CliRunner().invoke(
        app,
        ["train", str(path), "--runs-dir", str(base / "runs"), "--json", "--quiet"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- the form of a file


@pytest.mark.parametrize(
    "delimiter, text",
    [
        (",", "a,b,c\n1,2,x\n3,4,y\n"),
        (";", "a;b;c\n1,5;2;x\n3,25;4;y\n"),
        ("\t", "a\tb\tc\n1\t2\tx\n3\t4\ty\n"),
        ("|", "a|b|c\n1|2|x\n3|4|y\n"),
        (" ", "  a   b  c\n  1.5  2  x\n 3    4  y\n"),
    ],
)
def test_the_delimiter_is_sniffed(cli, write_config, tmp_path, delimiter, text):
    data = tmp_path / "t.csv"
    header, *body = text.splitlines()
    data.write_text("\n".join([header, *body * 4]) + "\n")
    out = validate_json(
        cli,
        write_config(
            {
                "data": {
                    "source": "csv",
                    "path": str(data),
                    "target": "c",
                    "validation_split": 0.25,
                    "test_split": 0.25,
                },
                "model": SMALL_MODEL,
            }
        ),
    )
    fmt = out["preprocessing"]["format"]
    assert fmt["delimiter"] == delimiter and fmt["header"] is True
    assert [f["name"] for f in out["preprocessing"]["features"]] == ["a", "b"]
    assert [f["type"] for f in out["preprocessing"]["features"]] == ["numeric", "numeric"]
    if delimiter == ";":
        assert fmt["decimal"] == "," and out["preprocessing"]["features"][0][
            "max"
        ] == pytest.approx(3.25)


def test_a_headerless_file_names_columns_by_position_so_int_and_string_targets_agree(
    cli, write_config, tmp_path
):
    rng = np.random.default_rng(0)
    rows = [
        ",".join(f"{v:.4f}" for v in rng.random(60)) + ("," + ("R" if i % 2 else "M"))
        for i in range(40)
    ]
    data = tmp_path / "sonar.all-data"
    data.write_text("\n".join(rows) + "\n")
    seen = []
    for target in (60, "60", -1):
        out = validate_json(
            cli,
            write_config(
                {
                    "data": {"source": "csv", "path": str(data), "target": target},
                    "model": SMALL_MODEL,
                }
            ),
        )
        assert out["preprocessing"]["format"]["header"] is False
        seen.append(
            (out["data"]["target"], tuple(out["data"]["features"]), out["data"]["samples"]["train"])
        )
    assert seen[0] == seen[1] == seen[2] and seen[0][0] == "60" and len(seen[0][1]) == 60
    assert seen[0][2] == 25  # all 40 rows are data: 40 - 8 test - 7 validation


def test_a_header_is_found_over_columns_of_numbers_and_quoting_is_honoured(
    cli, write_config, tmp_path
):
    data = tmp_path / "people.csv"
    rows = ['name,"city, state",age,label'] + [
        f'p{i},"{["Austin, TX", "Reno, NV", "Salem, OR"][i % 3]}", {20 + i} ,{"yes" if i % 2 else "no"}'
        for i in range(30)
    ]
    data.write_text("\n".join(rows) + "\n")
    out = validate_json(
        cli,
        write_config(
            {
                "data": {
                    "source": "csv",
                    "path": str(data),
                    "target": "label",
                    "features": ["city, state", "age"],
                },
                "model": SMALL_MODEL,
            }
        ),
    )
    city, age = out["preprocessing"]["features"]
    assert city["type"] == "categorical" and sorted(city["categories"]) == [
        "Austin, TX",
        "Reno, NV",
        "Salem, OR",
    ]
    assert age["type"] == "numeric" and 20 <= age["min"] and age["max"] <= 49


def test_quoted_cells_with_line_ends_and_quotes_are_read_across_pieces(
    cli, write_config, tmp_path, monkeypatch
):
    from dlcli.data.tables import whole

    monkeypatch.setattr(
        "dlcli.data.tables.pieces.PIECE", 4096
    )  # the reader parses a CSV a piece at a time
    pieces, cut = [], whole.csv_inputs

    def recorded(*args):
        for piece in cut(*args):
            pieces.append(piece)
            yield piece

    monkeypatch.setattr(whole, "csv_inputs", recorded)
    names = ['Smith, John\nand "Jo"', "Lee\nAnn", "Plain", 'Ng, "Kim"', "O'Neil,\nPat"]
    quoted = ['"' + name.replace('"', '""') + '"' for name in names]
    rows = ["id,owner,size,label"] + [
        f"{i},{quoted[i % 5]},{i % 7}.5,{'yes' if i % 5 in (0, 3) else 'no'}" for i in range(3_000)
    ]
    data = tmp_path / "owners.csv"
    data.write_text("\n".join(rows) + "\n")
    assert data.stat().st_size > 10 * 4096
    out = validate_json(
        cli,
        write_config(
            {
                "data": {
                    "source": "csv",
                    "path": str(data),
                    "target": "label",
                    "features": ["owner", "size"],
                },
                "model": SMALL_MODEL,
            }
        ),
    )
    owner, size = out["preprocessing"]["features"]
    assert sorted(owner["categories"]) == sorted(names) and owner["missing"] == 0
    assert size["type"] == "numeric" and size["min"] == 0.5 and size["max"] == 6.5
    assert sum(out["data"]["samples"].values()) == 3_000
    assert len(pieces) > 10 and all(
        isinstance(source, bytes) for source, _ in pieces
    )  # never the whole file


def test_a_numeric_column_can_be_declared_categorical(cli, write_config, tmp_path):
    out = validate_json(
        cli,
        write_config(
            table_config(
                CENSUS,
                features=["age", {"name": "education_num", "type": "categorical"}, "occupation"],
            )
        ),
    )
    kinds = {f["name"]: f["type"] for f in out["preprocessing"]["features"]}
    assert kinds == {"age": "numeric", "education_num": "categorical", "occupation": "categorical"}
    education = out["preprocessing"]["features"][1]
    assert (
        set(education["categories"]) <= {str(n) for n in range(1, 17)}
        and len(education["categories"]) > 5
    )


def test_a_position_past_the_last_column_is_refused_at_the_config_line(cli, write_config, tmp_path):
    config = write_config(table_config(CENSUS, target=11))
    refused(cli("validate", config), "position 11 is past the file's 11 columns", where=str(config))


def test_a_misspelt_column_gets_a_did_you_mean(cli, write_config, tmp_path):
    config = write_config(table_config(CENSUS, features=["age", "educaton"]))
    refused(
        cli("validate", config),
        "no feature column 'educaton'",
        "did you mean 'education'",
        where=str(config),
    )


def test_text_cells_in_a_column_of_numbers_name_the_first_one(cli, write_config, tmp_path):
    lines = census_lines(0, 400)
    cells = lines[122].split(", ")
    cells[2] = "unknown"  # fnlwgt on line 123
    lines[122] = ", ".join(cells)
    data = tmp_path / "census.csv"
    data.write_text("\n".join(lines) + "\n")
    refused(
        cli("validate", write_config(table_config(data))),
        "column 'fnlwgt' holds numbers",
        "'unknown'",
        "data.missing",
        "type: categorical",
        where=f"{data}:123",
    )


def test_on_missing_error_names_the_first_missing_cell(cli, write_config, tmp_path):
    lines = census_lines(0, 400)
    first = next(i for i, line in enumerate(lines) if "?" in line)
    column = COLUMNS[[c.strip() for c in lines[first].split(",")].index("?")]
    data = tmp_path / "census.csv"
    data.write_text("\n".join(lines) + "\n")
    refused(
        cli("validate", write_config(table_config(data, on_missing="error", missing=["?"]))),
        f"column '{column}' is missing",
        where=f"{data}:{first + 1}",
    )


def test_on_missing_drop_drops_the_rows_and_says_how_many(cli, write_config, tmp_path):
    lines = census_lines(0, 600)
    with_missing = sum("?" in line for line in lines)
    data = tmp_path / "census.csv"
    data.write_text("\n".join(lines) + "\n")
    out = validate_json(cli, write_config(table_config(data, on_missing="drop", missing=["?"])))
    assert out["preprocessing"]["rows"]["train_file"] == {
        "read": 600,
        "dropped": {"missing cells": with_missing},
    }
    assert sum(out["data"]["samples"].values()) == 600 - with_missing
    assert all(f["missing"] == 0 for f in out["preprocessing"]["features"])


# ---------------------------------------------------------------- training and using a table


@pytest.mark.slow
def test_the_census_example_learns_from_its_text_columns(census_run):
    run = Path(census_run["run"])
    labels = json.loads((run / "labels.json").read_text())
    assert labels == ["<=50K", ">50K"]
    rich = sum(line.endswith(">50K") for line in census_lines())
    majority = 1 - rich / len(census_lines())
    # Without the categories (ignored, or encoded as one number) the model scores about the majority share.
    assert census_run["test"]["accuracy"] > max(0.87, majority + 0.08), (
        census_run["test"],
        majority,
    )
    prep = json.loads((run / "preprocessing.json").read_text())
    features = {f["name"]: f for f in prep["features"]}
    assert (
        features["age"]["type"] == "numeric"
        and 17 <= features["age"]["min"] < features["age"]["mean"]
    )
    workclass = features["workclass"]
    assert workclass["type"] == "categorical" and workclass["encoding"] == "one_hot"
    assert (
        workclass["missing"] > 0
        and "?" not in workclass["categories"]
        and "Private" == workclass["categories"][0]
    )
    assert all(
        c == c.strip() for f in features.values() for c in f.get("categories", [])
    )  # ' Private' trimmed
    assert (
        features["hours_per_week"]["type"] == "numeric"
        and features["hours_per_week"]["missing"] > 0
    )
    assert sum(prep["rows"]["train_file"].values()) == 6000


@pytest.mark.slow
def test_predict_takes_raw_rows_and_reports_unseen_categories(cli, census_run, tmp_path):
    raw = tmp_path / "new.csv"
    rows = [line.rsplit(",", 1)[0] for line in census_lines(0, 5)]  # the features only, as written
    cells = rows[1].split(", ")
    cells[9] = "Atlantis"  # native_country never seen in training
    cells[1] = "?"  # missing workclass
    rows[1] = ", ".join(cells)
    raw.write_text("\n".join(rows) + "\n")
    result = cli("predict", census_run["run"], raw, "--proba")
    assert result.exit_code == 0, result.stderr
    out = result.stdout.strip().splitlines()
    assert out[0] == "prediction,proba_<=50K,proba_>50K" and len(out) == 6
    assert all(line.split(",")[0] in ("<=50K", ">50K") for line in out[1:])
    assert (
        "never seen in training" in result.stderr
        and "'native_country': 'Atlantis' x1" in result.stderr
    )
    as_json = json.loads(cli("predict", census_run["run"], raw, "--json").stdout)
    assert as_json["unseen"] == {"native_country": {"Atlantis": 1}} and as_json["count"] == 5

    with_target = (
        tmp_path / "with_target.csv"
    )  # all the training file's columns: the target is ignored
    with_target.write_text("\n".join(census_lines(0, 5)) + "\n")
    same = cli("predict", census_run["run"], with_target, "--proba")
    assert same.exit_code == 0, same.stderr
    assert same.stdout.splitlines()[1] == out[1] and same.stdout.splitlines()[3:] == out[3:]


@pytest.mark.slow
def test_a_csv_run_predicts_from_a_parquet_file_by_column_name(cli, census_run, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = [[c.strip() for c in line.split(",")] for line in census_lines(0, 6)]
    numeric = ("age", "fnlwgt", "education_num", "hours_per_week")
    table = {
        name: pa.array(
            [
                None if row[j] == "?" else (int(row[j]) if name in numeric else row[j])
                for row in cells
            ]
        )
        for j, name in enumerate(COLUMNS[:-1])
    }
    new = tmp_path / "new.parquet"
    pq.write_table(pa.table(table), new)
    raw = tmp_path / "new.csv"
    raw.write_text("\n".join(line.rsplit(",", 1)[0] for line in census_lines(0, 6)) + "\n")
    from_parquet, from_csv = (
        cli("predict", census_run["run"], new, "--proba"),
        cli("predict", census_run["run"], raw, "--proba"),
    )
    assert from_parquet.exit_code == 0, from_parquet.stderr
    assert from_parquet.stdout == from_csv.stdout and len(from_csv.stdout.splitlines()) == 7


@pytest.mark.slow
def test_evaluate_data_reads_a_raw_file_and_names_unseen_labels(cli, census_run, tmp_path):
    good = tmp_path / "test.csv"
    good.write_text("\n".join(census_lines(5000)) + "\n")
    result = cli("evaluate", census_run["run"], "--data", good, "--json")
    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)
    assert entry["samples"] == 1000 and entry["metrics"]["accuracy"] > 0.85

    dotted = tmp_path / "adult.test"  # as the real adult.test writes its labels: '>50K.'
    dotted.write_text("\n".join(line + "." for line in census_lines(5000, 5100)) + "\n")
    refused(
        cli("evaluate", census_run["run"], "--data", dotted),
        "'>50K.' (did you mean '>50K'?)",
        "never seen in training",
        where=str(dotted),
    )


@pytest.mark.slow
def test_a_test_file_with_unseen_labels_is_refused_before_training(
    cli, write_config, tmp_path, runs_dir
):
    train, test = tmp_path / "adult.data", tmp_path / "adult.test"
    train.write_text("\n".join(census_lines(0, 2000)) + "\n")
    test.write_text("\n".join(line + "." for line in census_lines(2000, 2300)) + "\n")
    result = cli(
        "train", write_config(table_config(train, test_path=str(test))), "--runs-dir", runs_dir
    )
    refused(result, "'<=50K.' (did you mean '<=50K'?)")
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.mark.slow
def test_categories_only_in_the_test_file_are_counted_as_unseen(
    cli, write_config, tmp_path, runs_dir
):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("\n".join(census_lines(0, 2000)) + "\n")
    lines = census_lines(2000, 2300)
    lines[0] = lines[0].replace(lines[0].split(", ")[9], "Atlantis")
    test.write_text("\n".join(lines) + "\n")
    out = train_json(cli, write_config(table_config(train, test_path=str(test))), runs_dir)
    prep = json.loads((Path(out["run"]) / "preprocessing.json").read_text())
    assert prep["unseen_in_test"] == {"native_country": {"Atlantis": 1}}


@pytest.mark.slow
def test_many_categories_get_an_embedding(cli, write_config, tmp_path, runs_dir):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 60, 1500)
    weights = rng.normal(size=60)
    rows = ["zip;x;label"] + [
        f"Z{c:03d};{v:.3f};{'hi' if weights[c] + v > 0 else 'lo'}"
        for c, v in zip(codes, rng.normal(size=1500))
    ]
    data = tmp_path / "zips.csv"
    data.write_text("\n".join(rows) + "\n")
    config = write_config(
        {
            **table_config(data, epochs=6),
            "data": {"source": "csv", "path": str(data), "target": "label"},
        }
    )
    out = train_json(cli, config, runs_dir)
    zip_code = json.loads((Path(out["run"]) / "preprocessing.json").read_text())["features"][0]
    assert (
        zip_code["encoding"] == "embedding"
        and zip_code["embedding_dim"] >= 4
        and len(zip_code["categories"]) == 60
    )
    assert out["test"]["accuracy"] > 0.8  # the zip code carries most of the signal


@pytest.mark.slow
def test_a_parquet_table_trains_and_predicts(cli, write_config, tmp_path, runs_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = [[c.strip() for c in line.split(",")] for line in census_lines(0, 1500)]
    table = {}
    for j, name in enumerate(COLUMNS):
        values = [None if row[j] == "?" else row[j] for row in cells]
        numeric = name in ("age", "fnlwgt", "education_num", "hours_per_week")
        table[name] = pa.array(
            [None if v is None else int(v) for v in values] if numeric else values
        )
    data = tmp_path / "census.parquet"
    pq.write_table(pa.table(table), data)
    config = write_config(
        {
            **table_config(data, epochs=4),
            "data": {"source": "parquet", "path": str(data), "target": "income"},
        }
    )
    out = train_json(cli, config, runs_dir)
    prep = json.loads((Path(out["run"]) / "preprocessing.json").read_text())
    kinds = {f["name"]: f["type"] for f in prep["features"]}
    assert kinds["hours_per_week"] == "numeric" and kinds["occupation"] == "categorical"
    assert out["test"]["accuracy"] > 0.8
    new = tmp_path / "new.parquet"
    pq.write_table(pa.table(table).slice(0, 7).drop_columns(["income"]), new)
    result = cli("predict", out["run"], new)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 8


@pytest.mark.slow
def test_a_semicolon_table_with_decimal_commas_is_a_regression(
    cli, write_config, tmp_path, runs_dir
):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3))
    soil = rng.choice(["clay", "sand", "loam"], 400)
    y = 2 * x[:, 0] - x[:, 1] + np.where(soil == "clay", 1.5, 0) + rng.normal(0, 0.1, 400)
    rows = ["ph;rain;temp;soil;yield"] + [
        ";".join(f"{v:.3f}".replace(".", ",") for v in row)
        + f"; {s} ;"
        + f"{t:.3f}".replace(".", ",")
        for row, s, t in zip(x, soil, y)
    ]
    data = tmp_path / "yield.csv"
    data.write_text("\n".join(rows) + "\n")
    config = write_config(
        {
            "name": "yield",
            "data": {"source": "csv", "path": str(data), "target": "yield"},
            "model": {
                "layers": [
                    {"type": "Dense", "units": 16, "activation": "relu"},
                    {"type": "Dense", "units": 1},
                ]
            },
            "compile": {
                "optimizer": {"type": "adam", "learning_rate": 0.01},
                "loss": None,  # inferred
                "metrics": ["mae"],
            },
            "training": {"epochs": 30, "batch_size": 32},
            "output": QUIET,
        }
    )
    out = train_json(cli, config, runs_dir)
    record = json.loads((Path(out["run"]) / "run.json").read_text())
    assert record["data"]["task"] == "regression"
    assert out["test"]["mae"] < 0.5  # y spans about ±6: the commas were read as decimal points


@pytest.mark.slow
def test_a_whitespace_aligned_file_without_header_trains(cli, write_config, tmp_path, runs_dir):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 4))
    label = (x[:, 0] + x[:, 2] > 0).astype(int)
    data = tmp_path / "aligned.data"
    data.write_text(
        "\n".join("  ".join(f"{v:8.3f}" for v in row) + f"   {c}" for row, c in zip(x, label))
        + "\n"
    )
    config = write_config(
        {
            "data": {"source": "csv", "path": str(data), "target": -1},
            "model": SMALL_MODEL,
            "training": {"epochs": 20, "batch_size": 32},
            "output": QUIET,
        }
    )
    out = train_json(cli, config, runs_dir)
    prep = json.loads((Path(out["run"]) / "preprocessing.json").read_text())
    assert prep["format"]["delimiter"] == " " and prep["target"] == "4"
    assert out["test"]["accuracy"] > 0.85


# The other Keras backends installed here (CI installs jax; torch where a developer has it).
OTHER_BACKENDS = [name for name in ("jax", "torch") if importlib.util.find_spec(name) is not None]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_a_table_with_one_hot_and_embedded_categories_runs_on_another_backend(
    write_config, tmp_path, runs_dir, backend
):
    def with_zip(lines, start):  # a 12th column of 40 categories: an embedding
        return [
            line.rsplit(",", 1)[0] + f", Z{(start + i) * 7 % 40:02d}," + line.rsplit(",", 1)[1]
            for i, line in enumerate(lines)
        ]

    train = tmp_path / "census.csv"
    train.write_text("\n".join(with_zip(census_lines(0, 2000), 0)) + "\n")
    columns = [*COLUMNS[:-1], "zip", "income"]
    config = write_config(
        {**table_config(train, epochs=4, columns=columns), "runtime": {"backend": backend}}
    )
    result = run_dlcli("train", config, "--runs-dir", runs_dir, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["test"]["accuracy"] > 0.85
    prep = json.loads((Path(out["run"]) / "preprocessing.json").read_text())
    encodings = {f["name"]: f.get("encoding") for f in prep["features"]}
    assert encodings["zip"] == "embedding" and encodings["education"] == "one_hot"
    assert json.loads((Path(out["run"]) / "run.json").read_text())["versions"]["backend"] == backend
    raw = tmp_path / "raw.csv"
    raw.write_text(
        "\n".join(line.rsplit(",", 1)[0] for line in with_zip(census_lines(3000, 3010), 3000))
        + "\n"
    )
    predicted = run_dlcli("predict", out["run"], raw)
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.strip().splitlines()) == 11
