"""Leading lines and quoted headers in CSV tables, through the real CLI: `data.skip_rows`
(whole, streamed, and in the files `evaluate --data` and `predict` read), the count line
scikit-learn's bundled CSVs begin with (found by `init --from-data`, refused by `train`,
never taken for a header), and header cells wrapped in single quotes."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import deep_update
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.data.tables import pieces, stream, whole
from dlcli.data.tables.form import LeadLine, inspect
from dlcli.data.tables.tablefile import TableFile

SKLEARN_DATA = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "data"
# (file, its count line, data rows, columns): scikit-learn's bundled CSVs as installed
COUNTED = [
    ("iris.csv", "150,4,setosa,versicolor,virginica", 150, 5),
    ("wine_data.csv", "178,13,class_0,class_1,class_2", 178, 14),
    ("breast_cancer.csv", "569,30,malignant,benign", 569, 31),
]
SMALL = {
    "name": "headers",
    "seed": 3,
    "data": {"source": "csv", "target": -1},
    "model": {"layers": [{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense"}]},
    "compile": {"optimizer": "adam", "metrics": ["accuracy"]},
    "training": {"epochs": 1, "batch_size": 32},
    "output": {"tensorboard": False, "plots": False},
}


def sklearn_csv(folder: Path, name: str) -> Path:
    """A copy of one of scikit-learn's bundled CSVs in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(SKLEARN_DATA / name, folder / name))


def write_yaml(path: Path, changes: dict) -> Path:
    path.write_text(yaml.safe_dump(deep_update(SMALL, changes), sort_keys=False))
    return path


def one_error(result) -> str:
    """The one line an exit 2 prints on stderr."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def run_folder(result) -> Path:
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """`init --from-data` on iris.csv, and the config it wrote trained as written (2 epochs):
    (the config's text, the run folder, the data file)."""
    base = tmp_path_factory.mktemp("iris")
    data = sklearn_csv(base / "data", "iris.csv")
    config = base / "iris.yaml"
    runner = CliRunner()
    written = runner.invoke(app, ["init", "--from-data", str(data), str(config)])
    assert written.exit_code == 0, written.stderr
    trained = runner.invoke(
        app,
        ["train", str(config), "--set", "training.epochs=2", "--runs-dir", str(base / "runs")]
        + ["--quiet"],
    )
    return config.read_text(), run_folder(trained), data


# ---------------------------------------------------------------- the rule


def test_the_count_line_rule_on_scikit_learns_files_and_ordinary_ones(tmp_path):
    for name, line, rows, width in COUNTED:
        path = sklearn_csv(tmp_path, name)
        with pytest.raises(LeadLine) as found:
            inspect(str(path))  # header: auto never takes it for a header
        assert (found.value.line, found.value.skip) == (1, 1)
        assert str(found.value).startswith(f"{path}:1: this line ({line[:57]}")
        for header in (True, False):  # nor a header or data, when told which the first row is
            with pytest.raises(LeadLine):
                inspect(str(path), header=header)
        fmt = inspect(str(path), skip_rows=1)
        assert (fmt.header, len(fmt.names), fmt.skip_rows) == (False, width, 1)
    ordinary = {  # text -> (header found, column names)
        "1,2,3,label\n0.5,1.5,2.5,0\n0.1,1.1,2.1,1\n0.7,1.7,2.7,0\n": (
            True,
            ["1", "2", "3", "label"],
        ),
        "2019,2020,region\n5.5,6,north\n4.2,3,south\n1.5,2,north\n2.5,1,south\n": (
            True,
            ["2019", "2020", "region"],
        ),
        "5,2,0\n1,2,3\n4,5,6\n7,8,9\n1,1,1\n2,2,2\n": (
            False,
            ["0", "1", "2"],
        ),  # numbers, not counts
        "2,3,a\n1,5,b\n7,1,a\n": (False, ["0", "1", "2"]),  # text over text is a data row
        "x,y,kind\n1.5,2,a\n2.5,3,b\n": (True, ["x", "y", "kind"]),
    }
    for number, (text, (header, names)) in enumerate(ordinary.items()):
        path = tmp_path / f"plain{number}.csv"
        path.write_text(text)
        fmt = inspect(str(path))
        assert (fmt.header, fmt.names) == (header, names), text
    census = inspect(str(Path(__file__).parent.parent / "configs" / "data" / "census.csv"))
    assert not census.header and len(census.names) == 11
    counts_only = tmp_path / "counts.csv"  # `rows,columns` over rows of another width
    counts_only.write_text("3,2\n1.5,2.5,0\n2.5,1.5,1\n0.5,0.5,0\n")
    with pytest.raises(LeadLine, match="counts the 3 rows and 2 columns"):
        inspect(str(counts_only))


@pytest.mark.parametrize("name, line, rows, width", COUNTED)
def test_train_without_skip_rows_is_exit_2_naming_line_1_and_the_fix(
    cli, tmp_path, name, line, rows, width
):
    data = sklearn_csv(tmp_path, name)
    config = write_yaml(tmp_path / "c.yaml", {"data": {"path": name}})
    error = one_error(cli("train", config, "--runs-dir", tmp_path / "runs"))
    assert error.startswith(f"error: {data}:1: this line ({line}) counts the {rows} rows"), error
    assert error.endswith("set data.skip_rows: 1 to skip it"), error
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- init --from-data, then train


@pytest.mark.slow
def test_init_from_data_writes_skip_rows_for_iris_and_the_config_trains(iris_run):
    text, run, _ = iris_run
    data = yaml.safe_load(text)["data"]
    assert data["skip_rows"] == 1 and data["header"] is False and data["target"] == 4
    assert data["features"] == [0, 1, 2, 3]
    comment = next(line for line in text.splitlines() if line.startswith("  skip_rows:"))
    assert "# line 1 (150,4,setosa,versicolor,virginica) counts the 150 rows" in comment
    assert "neither header nor data" in comment
    assert "3 classes (whole numbers, 3 distinct): '0' 50" in text
    prep = json.loads((run / "preprocessing.json").read_text())
    assert prep["format"]["skip_rows"] == 1 and prep["rows"]["train_file"]["read"] == 150


@pytest.mark.slow
def test_predict_and_evaluate_skip_the_count_line_for_a_run_with_skip_rows(cli, iris_run, tmp_path):
    _, run, data = iris_run
    fresh = shutil.copy(data, tmp_path / "new-iris.csv")
    predicted = cli("predict", run, fresh)
    assert predicted.exit_code == 0, predicted.stderr
    lines = predicted.stdout.strip().splitlines()
    assert lines[0] == "prediction" and len(lines) == 151
    assert set(lines[1:]) <= {"0", "1", "2"}
    evaluated = cli("evaluate", run, "--data", fresh, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["samples"] == 150
    doubled = tmp_path / "twice.csv"  # a second count line under the one the run skips
    doubled.write_text("150,4,setosa,versicolor,virginica\n" + data.read_text())
    error = one_error(cli("predict", run, doubled))
    assert error.startswith(f"error: {doubled}:2: this line (150,4,setosa"), error
    assert (
        "remove it: this run reads files in its training file's form (data.skip_rows: 1)" in error
    )


# ---------------------------------------------------------------- skip_rows, whole and streamed


def iris_after_lines(folder: Path) -> Path:
    """iris.csv under a title line and a blank one: three lines to skip, `\\r\\n` among them."""
    path = folder / "iris-titled.csv"
    path.write_bytes(b"Iris, from scikit-learn\r\n\n" + (SKLEARN_DATA / "iris.csv").read_bytes())
    return path


def test_whole_and_streamed_reads_agree_after_skipped_lines(tmp_path, monkeypatch):
    path = iris_after_lines(tmp_path)
    with pytest.raises(LeadLine) as found:
        TableFile.open(str(path), skip_rows=2)  # the count line is line 3
    assert (found.value.line, found.value.skip) == (3, 3)
    file = TableFile.open(str(path), skip_rows=3)
    features = ["0", "1", "2", "3"]
    monkeypatch.setattr(pieces, "PIECE", 512)  # many pieces: the first starts after line 3
    read = whole.read_table(file, features, "4", {})
    scanned = stream.scan(file, features, "4", {})
    assert read.x.shape == (150, 4) and read.x[0].tolist() == pytest.approx([5.1, 3.5, 1.4, 0.2])
    assert len(list(file.spans())) > 3
    streamed = np.concatenate([scanned.x.read(k) for k in range(len(scanned.x.starts) - 1)])
    np.testing.assert_array_equal(streamed, read.x)
    np.testing.assert_array_equal(scanned.y, read.y)
    assert file.where_row(0) == f"{path}:4" and file.cell_at(149, "4") == "2"


@pytest.mark.parametrize("streaming", [False, True])
def test_line_numbers_count_the_skipped_lines(cli, tmp_path, streaming):
    data = tmp_path / "t.csv"
    rows = [f"{i}.5,{i % 3}" for i in range(20)]
    rows[6] = "6.5,oops"
    data.write_text("exported by a tool\n2 columns\nx,label\n" + "\n".join(rows) + "\n")
    config = write_yaml(
        tmp_path / "c.yaml",
        {
            "data": {
                "path": "t.csv",
                "skip_rows": 2,
                "streaming": streaming,
                "features": [{"name": "label", "type": "numeric"}],
                "target": "x",
            }
        },
    )
    error = one_error(cli("train", config, "--runs-dir", tmp_path / "runs"))
    assert error.startswith(f"error: {data}:10: column 'label' is declared numeric"), error


@pytest.mark.slow
def test_skip_rows_trains_streamed(cli, tmp_path):
    iris_after_lines(tmp_path)
    config = write_yaml(
        tmp_path / "c.yaml",
        {"data": {"path": "iris-titled.csv", "skip_rows": 3, "streaming": True, "target": 4}},
    )
    run = run_folder(cli("train", config, "--runs-dir", tmp_path / "runs", "--quiet"))
    prep = json.loads((run / "preprocessing.json").read_text())
    assert prep["format"]["skip_rows"] == 3 and prep["format"]["names"] == list("01234")
    assert prep["rows"]["train_file"]["read"] == 150
    predicted = cli("predict", run, tmp_path / "iris-titled.csv")
    assert predicted.exit_code == 0, predicted.stderr
    assert len(predicted.stdout.strip().splitlines()) == 151


def test_negative_skip_rows_is_exit_2_at_its_config_line(cli, tmp_path):
    sklearn_csv(tmp_path, "iris.csv")
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n  source: csv\n  path: iris.csv\n  target: -1\n  skip_rows: -1\n"
        "model:\n  layers: [{type: Dense}]\n"
    )
    error = one_error(cli("train", config, "--runs-dir", tmp_path / "runs"))
    assert re.match(
        rf"error: {re.escape(str(config))}:5: data\.skip_rows: .*greater than or equal to 0", error
    ), error


# ---------------------------------------------------------------- quoted headers


@pytest.mark.slow
def test_a_single_quoted_header_names_its_columns_plainly(cli, tmp_path):
    body = "".join(
        f"{i / 10:.1f},{(i * 7) % 10 / 10:.1f},{'yes' if i % 2 else 'no'}\n" for i in range(24)
    )
    single = tmp_path / "single.csv"
    single.write_text("'sepal','petal','vote'\n" + body)
    config = write_yaml(tmp_path / "s.yaml", {"data": {"path": "single.csv", "target": "vote"}})
    run = run_folder(cli("train", config, "--runs-dir", tmp_path / "runs", "--quiet"))
    prep = json.loads((run / "preprocessing.json").read_text())
    assert prep["format"]["names"] == ["sepal", "petal", "vote"] and prep["target"] == "vote"
    assert [f["name"] for f in prep["features"]] == ["sepal", "petal"]
    typo = write_yaml(tmp_path / "t.yaml", {"data": {"path": "single.csv", "target": "votes"}})
    error = one_error(cli("validate", typo))
    assert "(did you mean 'vote'?); columns are: sepal, petal, vote" in error, error
    double = tmp_path / "double.csv"  # double quotes, as before
    double.write_text('"sepal","petal","vote"\n' + body)
    checked = cli(
        "validate",
        write_yaml(tmp_path / "d.yaml", {"data": {"path": "double.csv", "target": "vote"}}),
    )
    assert checked.exit_code == 0, checked.stderr
    assert inspect(str(double)).names == inspect(str(single)).names == ["sepal", "petal", "vote"]
    inner = tmp_path / "inner.csv"  # only a pair wrapping the whole cell comes off
    inner.write_text("it's,'b,\"c\"\n" + body)
    assert inspect(str(inner)).names == ["it's", "'b", "c"]
