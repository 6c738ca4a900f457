"""The commands around training: runs, show, compare, init, schema, env (through the real CLI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY, deep_update, run_dlcli, run_python
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.config.load import load_config


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    """Two real tiny runs in one runs dir: 32 hidden units, then 16 (two epochs each).
    Training them takes seconds, so the tests that use them are `slow`."""
    base = tmp_path_factory.mktemp("manage")
    config = base / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY, sort_keys=False))
    runner, folders = CliRunner(), []
    for name, units in (("wide", 32), ("narrow", 16)):
        result = runner.invoke(
            app,
            [
                "train",
                str(config),
                "--runs-dir",
                str(base / "runs"),
                "--quiet",
                "--set",
                "training.epochs=2",
                "--set",
                f"name={name}",
                "--set",
                f"model.layers.0.units={units}",
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        folders.append(Path(result.stdout.strip().splitlines()[-1]))
    return folders


def copy_run(
    source: Path, runs: Path, name: str, run_json: dict | None = None, metrics: dict | None = None
) -> Path:
    """A copy of a real run folder under a new id, with run.json / metrics.json fields changed."""
    target = runs / name
    shutil.copytree(source, target)
    for file, changes in (("run.json", run_json), ("metrics.json", metrics)):
        if changes is not None:
            data = json.loads((target / file).read_text())
            (target / file).write_text(
                json.dumps(
                    deep_update(data, {**changes, "id": name} if file == "run.json" else changes)
                )
            )
    return target


def runs_json(cli, runs, *options) -> dict:
    result = cli("runs", "--runs-dir", runs, "--json", *options)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# -- dlcli runs --------------------------------------------------------------------------


@pytest.mark.slow
def test_runs_table_shows_each_run_with_status_epochs_and_test_metrics(cli, two_runs):
    result = cli("runs", "--runs-dir", two_runs[0].parent)
    assert result.exit_code == 0, result.stderr
    for folder in two_runs:
        metrics = json.loads((folder / "metrics.json").read_text())
        line = next(line for line in result.stdout.splitlines() if folder.name in line)
        assert "completed" in line and " 2/2 " in line
        assert (
            f"{metrics['test']['accuracy']:.4f}" in line
            and f"{metrics['test']['loss']:.4f}" in line
        )
    assert (
        "test accuracy" in result.stdout
        and "test loss" in result.stdout
        and "best epoch" in result.stdout
    )


@pytest.mark.slow
def test_runs_json_is_one_object_with_every_run_and_its_metrics(cli, two_runs):
    listing = runs_json(cli, two_runs[0].parent)
    by_id = {row["id"]: row for row in listing["runs"]}
    assert set(by_id) == {folder.name for folder in two_runs} and listing["total"] == 2
    for folder in two_runs:
        row = by_id[folder.name]
        metrics = json.loads((folder / "metrics.json").read_text())
        record = json.loads((folder / "run.json").read_text())
        assert row["status"] == "completed" and row["epochs"] == 2 and row["epochs_run"] == 2
        assert (
            row["metrics"]["test"] == metrics["test"] and row["best_epoch"] == metrics["best_epoch"]
        )
        assert row["started"] == record["started"] and row["duration_s"] == record["duration_s"]
        assert Path(row["path"]) == folder


@pytest.fixture
def ranked_runs(two_runs, tmp_path) -> Path:
    """Three copies of a real run with known start times and test metrics."""
    runs = tmp_path / "ranked"
    runs.mkdir()
    for name, started, accuracy, loss in (
        ("old-good", "2026-01-01T10:00:00+00:00", 0.95, 0.20),
        ("mid-bad", "2026-01-02T10:00:00+00:00", 0.50, 1.50),
        ("new-ok", "2026-01-03T10:00:00+00:00", 0.80, 0.60),
    ):
        copy_run(
            two_runs[0],
            runs,
            name,
            {"started": started},
            {"test": {"accuracy": accuracy, "loss": loss}},
        )
    return runs


@pytest.mark.slow
def test_runs_are_newest_first_by_default(cli, ranked_runs):
    assert [r["id"] for r in runs_json(cli, ranked_runs)["runs"]] == [
        "new-ok",
        "mid-bad",
        "old-good",
    ]


@pytest.mark.slow
def test_sort_by_accuracy_puts_the_highest_first_and_by_loss_the_lowest(cli, ranked_runs):
    for key in ("accuracy", "test.accuracy"):
        assert [r["id"] for r in runs_json(cli, ranked_runs, "--sort", key)["runs"]] == [
            "old-good",
            "new-ok",
            "mid-bad",
        ]
    assert [r["id"] for r in runs_json(cli, ranked_runs, "--sort", "loss")["runs"]] == [
        "old-good",
        "new-ok",
        "mid-bad",
    ]
    table = cli("runs", "--runs-dir", ranked_runs, "--sort", "accuracy")
    lines = [
        line
        for line in table.stdout.splitlines()
        if "-good" in line or "-bad" in line or "-ok" in line
    ]
    assert [line.split()[1] for line in lines] == ["old-good", "new-ok", "mid-bad"]


@pytest.mark.slow
def test_limit_keeps_only_the_first_runs(cli, ranked_runs):
    listing = runs_json(cli, ranked_runs, "--sort", "accuracy", "--limit", "2")
    assert [r["id"] for r in listing["runs"]] == ["old-good", "new-ok"] and listing["total"] == 3
    table = cli("runs", "--runs-dir", ranked_runs, "--limit", "1")
    assert "new-ok" in table.stdout and "old-good" not in table.stdout and "1 of 3" in table.stdout


@pytest.mark.slow
def test_sort_by_a_metric_no_run_has_is_a_usage_error_with_a_suggestion(cli, ranked_runs):
    result = cli("runs", "--runs-dir", ranked_runs, "--sort", "acuracy")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert (
        "acuracy" in result.stderr
        and "test.accuracy" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.mark.slow
def test_a_running_run_whose_process_is_gone_shows_as_killed(cli, two_runs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    copy_run(
        two_runs[0],
        runs,
        "dead-run",
        {"status": "running", "pid": 999999, "ended": None, "duration_s": None},
    )
    copy_run(
        two_runs[0],
        runs,
        "live-run",
        {"status": "running", "pid": os.getpid(), "ended": None, "duration_s": None},
    )
    statuses = {r["id"]: r["status"] for r in runs_json(cli, runs)["runs"]}
    assert statuses == {"dead-run": "killed", "live-run": "running"}
    table = cli("runs", "--runs-dir", runs)
    assert "killed" in next(line for line in table.stdout.splitlines() if "dead-run" in line)
    shown = cli("show", runs / "dead-run")
    assert shown.exit_code == 0 and "killed" in shown.stdout and "999999" in shown.stdout


@pytest.mark.slow
def test_a_pid_reused_by_another_program_shows_as_killed(cli, two_runs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    other = subprocess.Popen(["sleep", "30"])  # a live process that is not a dlcli run
    try:
        copy_run(two_runs[0], runs, "reused", {"status": "running", "pid": other.pid})
        assert runs_json(cli, runs)["runs"][0]["status"] == "killed"
    finally:
        other.kill()
        other.wait()


@pytest.mark.slow
def test_half_created_and_corrupt_folders_do_not_break_runs(cli, two_runs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    copy_run(two_runs[0], runs, "good")
    (runs / "empty-20260101-000000").mkdir()
    (runs / "torn-20260101-000001").mkdir()
    (runs / "torn-20260101-000001" / "run.json").write_text('{"status": "runn')
    broken = copy_run(two_runs[0], runs, "broken-metrics")
    (broken / "metrics.json").write_text("[1, 2")
    (runs / "notes.txt").write_text("not a run")
    listing = runs_json(cli, runs)
    statuses = {r["id"]: r["status"] for r in listing["runs"]}
    assert statuses == {
        "good": "completed",
        "broken-metrics": "completed",
        "empty-20260101-000000": "incomplete",
        "torn-20260101-000001": "incomplete",
    }
    assert {r["id"]: r["metrics"] for r in listing["runs"]}["broken-metrics"] == {}
    table = cli("runs", "--runs-dir", runs, "--sort", "accuracy")
    assert table.exit_code == 0, table.stderr
    assert "incomplete" in table.stdout and "good" in table.stdout


def test_runs_in_an_empty_or_missing_dir_says_so(cli, tmp_path):
    result = cli("runs", "--runs-dir", tmp_path / "nothing")
    assert result.exit_code == 0 and result.stdout == "" and "no runs" in result.stderr
    assert runs_json(cli, tmp_path / "nothing")["runs"] == []


# -- dlcli show --------------------------------------------------------------------------


def test_show_prints_status_config_final_metrics_and_history(cli, trained_run):
    result = cli("show", trained_run)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((trained_run / "metrics.json").read_text())
    out = result.stdout
    assert trained_run.name in out and "completed" in out
    assert "config.yaml" in out and "source: digits" in out and "units: 32" in out
    assert "final metrics" in out and f"{metrics['test']['accuracy']:.4f}" in out
    history_rows = [
        line for line in out.splitlines() if line.startswith("│") and "val_" not in line
    ]
    for epoch in range(1, metrics["epochs_run"] + 1):
        assert any(line.split("│")[1].strip() == str(epoch) for line in history_rows)


def test_show_json_and_latest(cli, trained_run):
    result = cli("show", "latest", "--runs-dir", trained_run.parent, "--json")
    assert result.exit_code == 0, result.stderr
    details = json.loads(result.stdout)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert details["id"] == trained_run.name and details["status"] == "completed"
    assert details["config"] == yaml.safe_load((trained_run / "config.yaml").read_text())
    assert details["metrics"]["test"] == metrics["test"]
    assert [row["epoch"] for row in details["history"]] == list(range(1, metrics["epochs_run"] + 1))
    assert details["record"]["pid"] == json.loads((trained_run / "run.json").read_text())["pid"]


def test_show_an_unknown_run_is_a_usage_error(cli, trained_run):
    result = cli("show", "no-such-run", "--runs-dir", trained_run.parent)
    assert result.exit_code == 2
    assert "no run 'no-such-run'" in result.stderr and "Traceback" not in result.stderr


# -- dlcli compare -----------------------------------------------------------------------


@pytest.mark.slow
def test_compare_lists_the_config_keys_that_differ_with_each_runs_value(cli, two_runs):
    result = cli("compare", *two_runs, "--json")
    assert result.exit_code == 0, result.stderr
    compared = json.loads(result.stdout)
    assert [r["id"] for r in compared["runs"]] == [f.name for f in two_runs]
    differences = {d["key"]: d["values"] for d in compared["differences"]}
    assert differences == {"model.layers.0.units": [32, 16], "name": ["wide", "narrow"]}
    table = cli("compare", *two_runs)
    assert table.exit_code == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if "model.layers.0.units" in line)
    assert line.split("│")[2].strip() == "32" and line.split("│")[3].strip() == "16"


@pytest.mark.slow
def test_compare_marks_the_best_value_of_each_metric(cli, two_runs):
    compared = json.loads(cli("compare", *two_runs, "--json").stdout)
    tests = [json.loads((f / "metrics.json").read_text())["test"] for f in two_runs]
    rows = {m["metric"]: m for m in compared["metrics"]}
    accuracy, loss = rows["test.accuracy"], rows["test.loss"]
    assert accuracy["values"] == [t["accuracy"] for t in tests] and accuracy["goal"] == "max"
    assert accuracy["best"] == [max(range(2), key=lambda i: tests[i]["accuracy"])]
    assert loss["best"] == [min(range(2), key=lambda i: tests[i]["loss"])] and loss["goal"] == "min"
    table = cli("compare", *two_runs).stdout  # not a terminal: no bold, so the best is starred
    line = next(line for line in table.splitlines() if "test loss" in line)
    cells = [cell.strip() for cell in line.split("│")[2:4]]
    assert cells[loss["best"][0]].endswith(" *") and not cells[1 - loss["best"][0]].endswith("*")


@pytest.mark.slow
def test_compare_needs_two_runs(cli, two_runs):
    result = cli("compare", two_runs[0])
    assert result.exit_code == 2 and "at least two runs" in result.stderr


# -- dlcli init --------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["mlp", "regression", "binary"])
def test_init_writes_a_config_that_validates(cli, tmp_path, template):
    path = tmp_path / f"{template}.yaml"
    result = cli("init", path, "--template", template)
    assert result.exit_code == 0, result.stderr
    assert path.read_text().startswith("#") and result.stdout.strip() == str(path)
    checked = cli("validate", path)
    assert checked.exit_code == 0, checked.stderr
    assert "is valid" in checked.stdout


def test_init_writes_the_mlp_template_to_config_yaml_by_default(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("init").exit_code == 0
    assert load_config(tmp_path / "config.yaml").data.source == "digits"


def test_csv_template_validates_once_pointed_at_a_file(cli, tmp_path):
    path = tmp_path / "csv.yaml"
    assert cli("init", path, "-t", "csv").exit_code == 0
    text = path.read_text()
    assert "EDIT" in text
    load_config(path)  # schema-valid as written; only the data file is missing
    missing = cli("validate", path)
    assert missing.exit_code == 2 and "data file not found" in missing.stderr
    edited = text.replace(
        "path: data.csv ", f"path: {Path(__file__).parent.parent / 'configs/data/wine.csv'} "
    )
    edited = edited.replace("target: label ", "target: cultivar ")
    assert edited != text
    path.write_text(edited)
    checked = cli("validate", path)
    assert checked.exit_code == 0, checked.stderr


def test_init_refuses_to_overwrite_without_force(cli, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("mine: true\n")
    refused = cli("init", path)
    assert refused.exit_code == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr
    assert path.read_text() == "mine: true\n"
    forced = cli("init", path, "--force", "--template", "regression")
    assert forced.exit_code == 0 and "source: diabetes" in path.read_text()


def test_init_list_names_each_template_with_its_description(cli):
    result = cli("init", "--list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert {"mlp", "csv", "regression", "binary"} <= set(lines)
    assert "digits" in lines["mlp"] and "CSV" in lines["csv"] and "diabetes" in lines["regression"]


def test_init_with_an_unknown_template_suggests_one(cli, tmp_path):
    result = cli("init", tmp_path / "c.yaml", "--template", "mpl")
    assert result.exit_code == 2 and "did you mean 'mlp'" in result.stderr
    assert not (tmp_path / "c.yaml").exists()


# -- dlcli schema ------------------------------------------------------------------------


def test_schema_is_the_configs_json_schema(cli, tmp_path):
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert (
        schema["$schema"].startswith("https://json-schema.org/")
        and schema["title"] == "dlcli config"
    )
    assert {"data", "model", "compile", "training", "runtime", "output"} <= set(
        schema["properties"]
    )
    assert schema["required"] == ["data", "model"]
    keras_object = schema["$defs"]["KerasObject"]  # `optimizer: adam` is valid YAML for dlcli
    assert {"type": "string"} in [
        {k: v for k, v in o.items() if k == "type"} for o in keras_object["anyOf"]
    ]
    written = cli("schema", "--output", tmp_path / "dlcli.schema.json")
    assert written.exit_code == 0 and written.stdout == ""
    assert json.loads((tmp_path / "dlcli.schema.json").read_text()) == schema


# -- dlcli env ---------------------------------------------------------------------------


def test_env_reports_versions_backend_devices_and_precision(cli):
    result = cli("env", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    import keras

    assert info["keras"] == keras.__version__ and info["python"] == ".".join(
        map(str, sys.version_info[:3])
    )
    assert info["backend"] == keras.backend.backend()
    assert any(device["type"] == "CPU" for device in info["devices"])
    if not any(device["type"] == "GPU" for device in info["devices"]):
        assert (
            info["precision"]["auto"] == "float32" and info["precision"]["mixed_float16"] is False
        )
        explicit = info["precision"]["explicit"]
        assert explicit["mixed_float16"].startswith(
            "float16 math on the CPU: it runs, but slower than float32"
        )
        assert ("may run faster" in explicit["mixed_bfloat16"]) is info["precision"]["cpu_bfloat16"]
    table = cli("env")
    assert table.exit_code == 0 and "CPU" in table.stdout and info["keras"] in table.stdout


# -- speed: no TensorFlow or Keras -------------------------------------------------------


@pytest.mark.slow
def test_management_commands_import_neither_tensorflow_nor_keras(two_runs, tmp_path):
    runs = two_runs[0].parent
    commands = [
        ["--help"],
        ["runs", "--runs-dir", str(runs)],
        ["runs", "--runs-dir", str(runs), "--sort", "accuracy", "--json"],
        ["show", "latest", "--runs-dir", str(runs)],
        ["compare", *map(str, two_runs)],
        ["init", str(tmp_path / "c.yaml")],
        ["init", "--list"],
        ["schema"],
        [
            "init",
            "--from-data",
            str(Path(__file__).resolve().parent.parent / "configs" / "data" / "census.csv"),
            str(tmp_path / "census.yaml"),
        ],
    ]
    code = (
        "import os, sys, runpy\n"
        "def stay(code):\n    raise SystemExit(code)\n"
        "os._exit = stay  # the program ends with os._exit; stay to run the next command\n"
        f"for argv in {commands!r}:\n"
        "    sys.argv = ['dlcli', *argv]\n"
        "    try:\n        runpy.run_module('dlcli', run_name='__main__')\n"
        "    except SystemExit as exc:\n        assert not exc.code, (argv, exc.code)\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert two_runs[0].name in result.stdout and "test accuracy" in result.stdout


@pytest.mark.slow
def test_runs_as_a_subprocess_prints_only_json_on_stdout(two_runs):
    result = run_dlcli("runs", "--runs-dir", two_runs[0].parent, "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["runs"]) == 2
