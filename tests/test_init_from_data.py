"""`dlcli init --from-data FILE [--target COL] [PATH]`: a commented config fitted to a table file
(through the real CLI): its form, one comment per column, the target's classes or range, an
output layer and loss for the task; it validates and trains as written, and `init` stays free
of Keras."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, run_dlcli, run_python

from dlcli.config.load import load_config
from dlcli.init.render import sized_training

CENSUS = CONFIGS / "data" / "census.csv"
CENSUS_KINDS = [
    "numeric",
    "categorical",
    "numeric",
    "categorical",
    "numeric",
    "categorical",
    "categorical",
    "categorical",
    "numeric",
    "categorical",
]  # age, workclass, fnlwgt, ..., native_country
CENSUS_MISSING = {1: 292, 6: 265, 8: 57, 9: 134}  # the '?' cells per column


@pytest.fixture
def census(tmp_path):
    """A copy of the shipped census table (no header, ', ' separators, '?' missing) in data/."""
    (tmp_path / "data").mkdir()
    return shutil.copy(CENSUS, tmp_path / "data" / "census.csv")


def feature_comments(text: str) -> dict:
    """{column as written: its comment} of the lines under data.features."""
    block = text.split("  features:", 1)[1].split("\n  missing:", 1)[0]
    return {m[1]: m[2] for m in re.finditer(r"^    - (.+?) +# (.+)$", block, flags=re.MULTILINE)}


def check_census(text: str) -> None:
    config = yaml.safe_load(text)
    data = config["data"]
    assert data["source"] == "csv" and data["path"] == "data/census.csv"
    assert data["header"] is False and data["delimiter"] == ","
    assert data["target"] == 10 and data["task"] == "classification"  # income, the last column
    assert data["features"] == list(range(10))
    assert (
        data["missing"] == ["", "?", "NA", "N/A", "NaN", "nan", "null", "None"]
        and data["on_missing"] == "fill"
    )
    comments = feature_comments(text)
    assert list(comments) == [str(i) for i in range(10)]
    for i, kind in enumerate(CENSUS_KINDS):
        assert comments[str(i)].startswith(kind), comments[str(i)]
        assert f"{CENSUS_MISSING.get(i, 0):,} missing" in comments[str(i)], comments[str(i)]
    assert comments["0"].startswith("numeric, 17 to 90, mean ")
    assert "2 categories: Male, Female" in comments["7"] and "Private" in comments["1"]
    target_note = next(
        line for line in text.splitlines() if line.strip().startswith("# the target:")
    )
    assert "'<=50K'" in target_note and "'>50K'" in target_note and "2 classes" in target_note
    assert config["model"]["layers"][-1] == {"type": "Dense", "activation": "softmax"}
    assert config["compile"]["loss"] == "sparse_categorical_crossentropy" and config["compile"][
        "metrics"
    ] == ["accuracy"]
    rows = int(re.search(r"# sized to ([\d,]+) rows", text)[1].replace(",", ""))
    assert rows == len(CENSUS.read_text().splitlines())
    epochs, batch, patience = sized_training(rows)
    assert config["training"] == {
        "epochs": epochs,
        "batch_size": batch,
        "early_stopping": {
            "monitor": "val_loss",
            "patience": patience,
            "restore_best_weights": True,
            "start_from_epoch": min(10, patience),
        },
    }
    assert text.startswith(
        "# A classification config made by `dlcli init --from-data` from census.csv"
    )


def test_census_with_target_minus_one(cli, census, tmp_path):
    path = tmp_path / "census.yaml"
    result = cli("init", "--from-data", census, "--target", "-1", path, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "written": str(path),
        "from_data": str(census),
        "target": 10,
        "task": "classification",
        "rows": 6000,
        "features": 10,
        "classes": ["<=50K", ">50K"],
    }
    check_census(path.read_text())
    assert load_config(path).data.path == str(
        census
    )  # the relative path starts at the config's folder


def test_census_without_target_takes_the_last_column_and_names_the_file_after_it(
    cli, census, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = cli("init", "--from-data", "data/census.csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "census.yaml" and "dlcli validate census.yaml" in result.stderr
    text = (tmp_path / "census.yaml").read_text()
    check_census(text)
    assert yaml.safe_load(text)["name"] == "census"
    checked = cli("validate", "census.yaml")
    assert checked.exit_code == 0, checked.stderr


def test_a_folder_gets_the_data_files_name_and_the_path_is_relative_to_it(cli, census, tmp_path):
    folder = tmp_path / "experiments" / "one"
    folder.mkdir(parents=True)
    result = cli("init", "--from-data", census, str(folder) + "/")
    assert result.exit_code == 0, result.stderr
    config = yaml.safe_load((folder / "census.yaml").read_text())
    assert config["data"]["path"] == "../../data/census.csv"


@pytest.mark.slow
def test_the_census_config_trains_as_written_and_beats_the_majority_class(census, tmp_path):
    config = tmp_path / "census.yaml"
    written = run_dlcli("init", "--from-data", census, config, timeout=60)
    assert written.returncode == 0, written.stderr
    trained = run_dlcli(
        "train",
        config,
        "--set",
        "training.epochs=2",
        "--runs-dir",
        tmp_path / "runs",
        "--json",
        timeout=120,
    )
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads(trained.stdout)
    labels = [
        line.rsplit(",", 1)[1].strip() for line in CENSUS.read_text().splitlines() if line.strip()
    ]
    majority = max(labels.count(label) for label in set(labels)) / len(labels)  # about 0.77
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 2
    assert metrics["test"]["accuracy"] > majority, (metrics["test"], majority)


def write_houses(path, rows: int = 300) -> None:
    """A ';' table with a header, decimal commas and a price to predict (many distinct values)."""
    rng = np.random.default_rng(0)
    lines = ["surface;rooms;city;price"]
    for _ in range(rows):
        surface = round(float(rng.uniform(20, 200)), 2)
        rooms = int(rng.integers(1, 7))
        city = str(rng.choice(["Lyon", "Paris", "Nantes"]))
        price = round(surface * 3 + rooms * 5 + float(rng.normal(0, 10)), 2)
        lines.append(f"{surface};{rooms};{city};{price}".replace(".", ","))
    path.write_text("\n".join(lines) + "\n")


def test_a_semicolon_file_with_decimal_commas_and_a_numeric_target_is_a_regression(cli, tmp_path):
    data = tmp_path / "houses.csv"
    write_houses(data)
    path = tmp_path / "houses.yaml"
    result = cli("init", "--from-data", data, path, "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["target"] == "price" and facts["task"] == "regression" and "classes" not in facts
    text = path.read_text()
    config = yaml.safe_load(text)
    assert (
        config["data"]["header"] is True
        and config["data"]["delimiter"] == ";"
        and config["data"]["path"] == "houses.csv"
    )
    assert "decimal commas" in text
    assert config["data"]["target"] == "price" and config["data"]["task"] == "regression"
    assert config["data"]["features"] == ["surface", "rooms", "city"]
    comments = feature_comments(text)
    assert re.match(
        r"numeric, 2\d\.\d+ to 19\d\.\d+, mean [\d.]+, 0 missing$", comments["surface"]
    ), comments
    assert comments["city"].startswith("categorical, 3 categories: ")
    assert re.search(
        r"# the target: numbers from [\d.,]+ to [\d.,]+, mean [\d.,]+, \d+ distinct: regression",
        text,
    )
    assert config["model"]["layers"][-1] == {"type": "Dense", "units": 1}
    assert config["compile"]["loss"] == "mean_squared_error" and config["compile"]["metrics"] == [
        "mae"
    ]
    checked = cli("validate", path)
    assert checked.exit_code == 0, checked.stderr


@pytest.mark.parametrize(
    ("values", "task"),
    [
        # 21 rows, 14 whole-number values, most seen once: a measurement (stackloss)
        (
            [42, 37, 37, 28, 18, 18, 19, 20, 15, 14, 14, 13, 11, 12, 8, 7, 8, 8, 9, 15, 15],
            "regression",
        ),
        # 12 rows, 3 values each seen four times: classes
        ([0, 1, 2] * 4, "classification"),
    ],
)
def test_whole_numbers_are_classes_only_when_their_values_repeat(cli, tmp_path, values, task):
    rng = np.random.default_rng(0)
    data = tmp_path / "t.csv"
    rows = [f"{a:.3f},{b:.3f},{v}" for (a, b), v in zip(rng.normal(size=(len(values), 2)), values)]
    data.write_text("x1,x2,y\n" + "\n".join(rows) + "\n")
    result = cli("init", "--from-data", data, tmp_path / "t.yaml", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["task"] == task


def test_a_parquet_file_and_a_target_by_name(cli, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    data = tmp_path / "flowers.parquet"
    pq.write_table(
        pa.table(
            {
                "species": rng.choice(["a", "b", "c"], 120),
                "petal": rng.normal(4, 1, 120),
                "color": rng.choice(["red", "blue", None], 120),
                "weight": rng.normal(10, 2, 120),
            }
        ),
        data,
    )
    path = tmp_path / "flowers.yaml"
    result = cli("init", "--from-data", data, "--target", "species", path, "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert (
        facts["target"] == "species"
        and facts["task"] == "classification"
        and facts["classes"] == ["a", "b", "c"]
    )
    text = path.read_text()
    config = yaml.safe_load(text)
    assert config["data"]["source"] == "parquet" and config["data"]["path"] == "flowers.parquet"
    assert "header" not in config["data"] and "delimiter" not in config["data"]  # csv-only keys
    assert config["data"]["features"] == ["petal", "color", "weight"]
    comments = feature_comments(text)
    assert comments["petal"].startswith("numeric, ") and comments["color"].startswith(
        "categorical, 2 categories"
    )
    assert not comments["color"].endswith(" 0 missing")
    checked = cli("validate", path)
    assert checked.exit_code == 0, checked.stderr


def test_column_names_yaml_would_misread_are_quoted_and_a_tab_delimiter_reads_back(cli, tmp_path):
    names = ["yes", "no", "1e3", "a: b", "# x", "null", "plain"]
    data = tmp_path / "odd names.tsv"
    rows = ["\t".join([*names, "label"])]
    rows += [
        "\t".join(
            [
                str(i % 3),
                str(i % 5),
                str(i),
                str(i % 2),
                str(i % 7),
                str(i % 4),
                f"{i}.5",
                "up" if i % 2 else "down",
            ]
        )
        for i in range(60)
    ]
    data.write_text("\n".join(rows) + "\n")
    path = tmp_path / "odd.yaml"
    result = cli("init", "--from-data", data, path)
    assert result.exit_code == 0, result.stderr
    config = yaml.safe_load(path.read_text())
    assert config["name"] == "odd-names"
    assert config["data"]["delimiter"] == "\t" and config["data"]["features"] == names
    assert config["data"]["target"] == "label"
    checked = cli("validate", path)
    assert checked.exit_code == 0, checked.stderr


def test_an_id_column_is_left_out_with_a_comment(cli, tmp_path):
    data = tmp_path / "people.csv"
    data.write_text(
        "name,age,label\n"
        + "".join(f"person{i},{20 + i % 50},{'a' if i % 3 else 'b'}\n" for i in range(200))
    )
    path = tmp_path / "people.yaml"
    assert cli("init", "--from-data", data, path).exit_code == 0
    text = path.read_text()
    assert yaml.safe_load(text)["data"]["features"] == ["age"]
    assert re.search(
        r"^    # - name +# categorical, 200 distinct values in 200 rows: an id or free text\? left out$",
        text,
        flags=re.MULTILINE,
    )


def test_an_unknown_target_is_exit_2_with_a_suggestion(cli, tmp_path):
    data = tmp_path / "houses.csv"
    write_houses(data, rows=20)
    result = cli("init", "--from-data", data, "--target", "prise", tmp_path / "h.yaml")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {data}: ")
    assert "did you mean 'price'" in lines[0] and "surface, rooms, city, price" in lines[0]
    assert not (tmp_path / "h.yaml").exists()


@pytest.mark.parametrize(
    "target, needle",
    [
        ("nosuch", "the file has no header row, so give --target as a position"),
        ("11", "--target 11 is past the file's 11 columns; give 0 to 10, or -1 for the last"),
    ],
)
def test_a_bad_target_in_a_file_without_header(cli, census, tmp_path, target, needle):
    result = cli("init", "--from-data", census, "--target", target, tmp_path / "c.yaml")
    assert result.exit_code == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_a_missing_file_is_exit_2_naming_it(cli, tmp_path):
    missing = tmp_path / "nope.csv"
    result = cli("init", "--from-data", missing, tmp_path / "c.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {missing}: no such file; check the --from-data FILE path"
    ]
    assert not (tmp_path / "c.yaml").exists()


def test_a_stray_text_cell_in_a_column_of_numbers_names_its_line(cli, tmp_path):
    data = tmp_path / "t.csv"
    data.write_text(
        "a,b,label\n" + "".join(f"{i},{i * 2},x{i % 2}\n" for i in range(10)) + "oops,3,x1\n"
    )
    result = cli("init", "--from-data", data, tmp_path / "t.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {data}:12: column 'a' holds numbers but this row has 'oops'"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_refuses_to_overwrite_without_force(cli, census, tmp_path):
    path = tmp_path / "census.yaml"
    path.write_text("mine: true\n")
    refused = cli("init", "--from-data", census, path)
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {path}: already exists; pass --force to overwrite it, or choose another PATH"
    ]
    assert path.read_text() == "mine: true\n"
    forced = cli("init", "--from-data", census, path, "--force")
    assert forced.exit_code == 0 and yaml.safe_load(path.read_text())["data"]["target"] == 10


def test_target_needs_from_data_and_template_excludes_it(cli, census, tmp_path):
    alone = cli("init", tmp_path / "c.yaml", "--target", "3")
    assert alone.exit_code == 2 and "--target goes with --from-data" in alone.stderr
    both = cli("init", "--from-data", census, "--template", "csv", tmp_path / "c.yaml")
    assert both.exit_code == 2 and "not both" in both.stderr
    assert not (tmp_path / "c.yaml").exists()


@pytest.mark.slow
def test_init_from_data_imports_neither_tensorflow_nor_keras(census, tmp_path):
    code = (
        "import os, sys, runpy, time\n"
        "os._exit = lambda code: (_ for _ in ()).throw(SystemExit(code))\n"
        f"sys.argv = ['dlcli', 'init', '--from-data', {str(census)!r}, {str(tmp_path / 'c.yaml')!r}]\n"
        "try:\n    runpy.run_module('dlcli', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["data"]["target"] == 10


def test_the_training_a_generated_config_gets_is_sized_to_the_table():
    small, medium, large = sized_training(300), sized_training(30_000), sized_training(3_000_000)
    assert small[1] == 16 and small[0] >= 200  # a few hundred rows: small batches, many epochs
    assert medium[1] == 64 and 20 <= medium[0] < small[0]
    assert large == (20, 1024, 5)  # millions of rows: big batches, few epochs
    for epochs, _, patience in (small, medium, large):
        assert 5 <= patience <= 30 and patience <= epochs // 4
