"""`dlcli train`: the run folder of the contract, on real data, through the real CLI."""

from __future__ import annotations

import csv
import json
import signal
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS, DIVERGING, run_dlcli, run_python, stopped_train

RUN_FILES = [
    "config.yaml",
    "run.json",
    "history.csv",
    "metrics.json",
    "model.keras",
    "labels.json",
    "summary.txt",
    "curves.png",
]


@pytest.mark.slow
def test_digits_mlp_trains_offline_to_095_and_writes_every_file(tmp_path):
    result = run_dlcli(
        "train", CONFIGS / "digits_mlp.yaml", "--runs-dir", tmp_path / "runs", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    run = Path(result.stdout.strip())
    assert result.stdout.strip().count("\n") == 0, "stdout is the run folder's path alone"
    assert run.parent == tmp_path / "runs" and run.name.startswith("digits-mlp-")
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert (run / "checkpoints" / state["checkpoint"]).is_file()
    assert state["best_weights"] and (run / "checkpoints" / state["best_weights"]).is_file()
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = json.loads((run / "metrics.json").read_text())
    keys = {"train", "val", "test", "best_epoch", "epochs_run", "samples_per_s", "baselines"}
    assert set(metrics) == keys
    assert list(metrics["baselines"]) == ["majority"]  # digits is pixels: no gradient boosting
    assert metrics["test"]["accuracy"] >= 0.95
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 20
    assert metrics["samples_per_s"] > 0

    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed"
    assert record.get("error") is None, "a completed run carries no error"
    assert set(record["versions"]) == {"dlcli", "keras", "backend", "backend_version", "python"}
    assert record["data"]["samples"] == {"train": 1149, "val": 288, "test": 360}
    assert record["runtime"]["precision"] == "float32" and record["seed"] == 42
    assert record["duration_s"] > 0 and record["ended"] >= record["started"]

    with open(run / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, metrics["epochs_run"] + 1))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time_s"} <= set(rows[0])
    assert json.loads((run / "labels.json").read_text()) == list(range(10))

    # One plain line per epoch on a non-terminal, no control characters.
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == metrics["epochs_run"]
    assert "\x1b" not in result.stderr and "\r" not in result.stderr


@pytest.mark.slow
def test_resolved_config_records_inferred_values_and_reproduces_the_run(
    cli, write_config, runs_dir
):
    config = write_config(
        {
            "model": {
                "layers": [
                    {"type": "Dense", "units": 16, "activation": "relu"},
                    {"type": "Dense", "activation": "softmax"},
                ]
            },
            "compile": {"loss": None},
            "runtime": {"deterministic": True},
        }
    )
    first = cli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert first.exit_code == 0, first.stderr
    run = Path(first.stdout.strip())
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["layers"][-1]["units"] == 10
    assert resolved["model"]["input_shape"] == [64]
    assert resolved["compile"]["loss"] == {"type": "sparse_categorical_crossentropy"}
    assert resolved["runtime"]["backend"] == "auto"  # as given: run.json says which one trained it
    assert json.loads((run / "run.json").read_text())["runtime"]["backend"] in ("tensorflow", "jax")

    again = cli("train", run / "config.yaml", "--runs-dir", runs_dir, "--quiet")
    assert again.exit_code == 0, again.stderr
    rerun = Path(again.stdout.strip())
    assert rerun != run
    a = json.loads((run / "metrics.json").read_text())["test"]
    b = json.loads((rerun / "metrics.json").read_text())["test"]
    assert abs(a["loss"] - b["loss"]) < 1e-4 and a["accuracy"] == b["accuracy"]


@pytest.mark.slow
def test_set_overrides_epochs_and_nested_keys(cli, write_config, runs_dir):
    config = write_config()
    result = cli(
        "train",
        config,
        "--runs-dir",
        runs_dir,
        "--quiet",
        "--set",
        "training.epochs=2",
        "--set",
        "model.layers.0.units=8",
        "--set",
        "compile.optimizer.learning_rate=0.005",
    )
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["layers"][0]["units"] == 8
    assert resolved["compile"]["optimizer"] == {"type": "adam", "learning_rate": 0.005}
    assert (
        json.loads((run / "run.json").read_text())["parameters"]["total"]
        == 64 * 8 + 8 + 8 * 10 + 10
    )


@pytest.mark.slow
def test_regularizers_initializers_and_constraints_written_as_type_specs(
    cli, write_config, runs_dir
):
    hidden = {
        "type": "Dense",
        "units": 16,
        "activation": "relu",
        "kernel_regularizer": {"type": "L2", "l2": 0.001},
        "kernel_initializer": {"type": "RandomNormal", "stddev": 0.05, "seed": 3},
        "bias_initializer": "zeros",  # Keras's own short form
        "kernel_constraint": {"type": "max_norm", "max_value": 2},
    }
    layers = [hidden, {"type": "Dense", "units": 10, "activation": "softmax"}]
    config = write_config({"model": {"layers": layers}, "training": {"epochs": 2}})
    result = cli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    with zipfile.ZipFile(run / "model.keras") as saved:
        model = json.loads(saved.read("config.json"))
    dense = next(l["config"] for l in model["config"]["layers"] if l["class_name"] == "Dense")
    assert dense["kernel_regularizer"]["class_name"] == "L2"
    assert dense["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.001)
    assert dense["kernel_initializer"]["class_name"] == "RandomNormal"
    assert dense["kernel_initializer"]["config"]["stddev"] == 0.05
    assert dense["kernel_constraint"]["class_name"] == "MaxNorm"
    assert dense["kernel_constraint"]["config"]["max_value"] == 2
    resolved = yaml.safe_load((run / "config.yaml").read_text())  # as written
    assert resolved["model"]["layers"][0]["kernel_regularizer"] == {"type": "L2", "l2": 0.001}


@pytest.mark.slow
def test_json_output_is_one_object(cli, write_config, runs_dir):
    result = cli("train", write_config(), "--runs-dir", runs_dir, "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "completed" and Path(payload["run"]).is_dir()
    assert set(payload["test"]) == {"loss", "accuracy"}
    assert "epoch 1/3" in result.stderr  # progress goes to stderr


@pytest.mark.slow
def test_early_stopping_and_reduce_lr_take_effect(cli, write_config, runs_dir):
    config = write_config(
        {
            "training": {
                "epochs": 60,
                "batch_size": 64,
                "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 0.01},
                "reduce_lr_on_plateau": {
                    "monitor": "val_loss",
                    "factor": 0.5,
                    "patience": 1,
                    "min_delta": 0.05,
                },
            }
        }
    )
    result = cli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] < 60
    with open(run / "history.csv", newline="") as handle:
        lrs = [float(r["lr"]) for r in csv.DictReader(handle)]
    assert lrs[0] > lrs[-1], "ReduceLROnPlateau lowered the learning rate"
    best = metrics["best_epoch"]
    kept = next(r for r in _history(run) if r["epoch"] == best)
    assert metrics["val"]["loss"] == kept["val_loss"], "restore_best_weights keeps the best epoch"
    assert metrics["epochs_run"] - best <= 2 + 1


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(handle)]


@pytest.mark.slow
def test_diverging_loss_fails_with_exit_1_and_keeps_the_folder(cli, write_config, runs_dir):
    config = write_config(DIVERGING)
    result = cli("train", config, "--runs-dir", runs_dir)
    assert result.exit_code == 1
    assert "NaN/inf" in result.stderr and "Traceback" not in result.stderr
    [run] = list(runs_dir.iterdir())
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "epoch 1" in record["error"]
    assert not (run / "model.keras").exists()


@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_with_exit_130(tmp_path, write_config):
    config = write_config({"training": {"epochs": 500, "batch_size": 16}})
    runs = tmp_path / "runs"
    code, err = stopped_train(config, runs, 2, signal.SIGTERM)
    assert code == 130, err
    assert "Traceback" not in err
    [run] = list(runs.iterdir())
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted"
    completed = json.loads((run / "checkpoints" / "state.json").read_text())["epoch"]
    assert completed >= 1

    resumed = run_dlcli("train", "--resume", run, "--set", f"training.epochs={completed + 2}")
    assert resumed.returncode == 0, resumed.stderr
    with open(run / "history.csv", newline="") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == list(range(1, completed + 3))
    record = json.loads((run / "run.json").read_text())
    assert (
        record["status"] == "completed" and record["resumes"][0]["previous_status"] == "interrupted"
    )


@pytest.mark.slow
def test_help_imports_neither_tensorflow_nor_keras():
    code = (
        "import os, sys, runpy\n"
        "def stay(code):\n    raise SystemExit(code)\n"
        "os._exit = stay  # the program ends with os._exit; stay to look at what it imported\n"
        "sys.argv = ['dlcli', '--help']\n"
        "try:\n    runpy.run_module('dlcli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "train" in result.stdout and "evaluate" in result.stdout


@pytest.mark.slow
def test_python_api_uses_the_same_path(tmp_path):
    from conftest import TINY

    import dlcli

    result = dlcli.train(
        TINY, overrides=["training.epochs=1"], runs_dir=tmp_path / "runs", progress=False
    )
    assert result.metrics["epochs_run"] == 1
    entry = dlcli.evaluate(result.run)
    assert abs(entry["metrics"]["loss"] - result.metrics["test"]["loss"]) < 1e-5
