"""`dlcli cv`: k-fold cross-validation through the real CLI, on real data (scikit-learn's digits
and diabetes): the folds, their runs, cv.json's summary, runs/show, failures, Ctrl-C and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY, deep_update, run_dlcli, running_pid, signal_pending, wait_for

from dlcli.config.load import load_config
from dlcli.data.dataset import load_data


def write(tmp_path: Path, config: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cv_record(folder: Path) -> dict:
    return json.loads((folder / "cv.json").read_text())


@pytest.mark.slow
def test_cv_runs_a_complete_run_per_fold_and_summarises_them(tmp_path):
    runs = tmp_path / "runs"
    config = write(tmp_path, deep_update(TINY, {"training": {"epochs": 2}}))
    result = run_dlcli(
        "cv", config, "--folds", "3", "--parallel", "2", "--runs-dir", runs, "--json"
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    folder = Path(printed["cv"])
    assert folder.parent == runs and folder.name.startswith("tiny-cv-")
    record = cv_record(folder)
    assert {k: v for k, v in printed.items() if k != "cv"} == record
    assert record["status"] == "completed" and record["k"] == 3
    assert record["counts"] == {"completed": 3}
    assert [f["fold"] for f in record["folds"]] == [0, 1, 2]

    val_rows, test_sizes = [], set()
    for row in record["folds"]:
        run = folder / row["run"]
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        metrics = json.loads((run / "metrics.json").read_text())
        assert row["metrics"] == {"val": metrics["val"], "test": metrics["test"]}
        # The fold's own config says which fold it validates on: evaluate re-derives it.
        fold_config = load_config(run / "config.yaml")
        assert fold_config.data.fold.index == row["fold"] and fold_config.data.fold.of == 3
        data = load_data(fold_config)
        val_rows.append({tuple(r) for r in np.round(data.val.x, 6)})
        test_sizes.add(len(data.test))
        assert len(data.train) + len(data.val) == 1437  # digits less its 20 % test split
        # stratified: each class's share of the fold within a sample of the whole
        share = np.bincount(data.val.y, minlength=10) / len(data.val)
        whole = np.bincount(np.concatenate([data.train.y, data.val.y]), minlength=10) / 1437
        assert np.abs(share - whole).max() < 0.01
    assert test_sizes == {360}  # the same test split, held out of every fold
    assert sum(len(rows) for rows in val_rows) == 1437 - 0  # the folds cover the training data
    assert not (val_rows[0] & val_rows[1]) and not (val_rows[1] & val_rows[2])

    for split in ("val", "test"):
        for name in ("accuracy", "loss"):
            values = [f["metrics"][split][name] for f in record["folds"]]
            stats = record["metrics"][split][name]
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values))
            assert (stats["min"], stats["max"]) == (min(values), max(values))
    assert record["metric"] == "accuracy" and record["direction"] == "max"

    # A fold's run is a run like any other: evaluate re-scores its own held-out fold.
    first = folder / record["folds"][0]["run"]
    again = run_dlcli("evaluate", first, "--split", "val", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["metrics"]["accuracy"] == pytest.approx(
        record["folds"][0]["metrics"]["val"]["accuracy"], abs=1e-6
    )

    listed = run_dlcli("runs", "--runs-dir", runs, "--json")
    [row] = json.loads(listed.stdout)["runs"]
    assert row["kind"] == "cv" and row["k"] == 3
    assert row["mean"] == pytest.approx(record["metrics"]["val"]["accuracy"]["mean"])
    table = run_dlcli("runs", "--runs-dir", runs)
    mean, std = (
        record["metrics"]["val"]["accuracy"]["mean"],
        record["metrics"]["val"]["accuracy"]["std"],
    )
    assert f"val_accuracy {mean:.4f} ± {std:.4f}" in table.stdout
    shown = run_dlcli("show", folder.name, "--runs-dir", runs)
    assert shown.returncode == 0, shown.stderr
    assert "(cv)" in shown.stdout and "3 folds" in shown.stdout and "mean" in shown.stdout


@pytest.mark.slow
def test_cv_of_a_regression_cuts_plain_folds(tmp_path, cli):
    config = {
        "name": "reg",
        "seed": 5,
        "data": {"source": "diabetes", "test_split": 0.2},
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": 1},
            ]
        },
        "compile": {"loss": "mse", "metrics": ["mae"]},
        "training": {"epochs": 2},
        "output": {"tensorboard": False, "plots": False},
    }
    result = cli(
        "cv", write(tmp_path, config), "--folds", "2", "--runs-dir", tmp_path / "runs", "--json"
    )
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["counts"] == {"completed": 2}
    assert record["metric"] == "mae" and record["direction"] == "min"
    sizes = [
        len(load_data(load_config(Path(record["cv"]) / f["run"] / "config.yaml")).val)
        for f in record["folds"]
    ]
    assert sum(sizes) == 353  # diabetes' 442 rows less the test split, in two folds
    # Each fold's run scored the baselines on the test split: cv.json sets their mean beside
    for name in ("majority", "gradient_boosting"):
        values = [f["baselines"][name]["mae"] for f in record["folds"]]
        assert record["baselines"][name]["mae"]["mean"] == pytest.approx(np.mean(values))
    assert record["baselines"]["majority"]["mae"]["mean"] > 50  # predicting the mean: ~64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--folds", "1"], "--folds: 1 folds: k-fold needs at least 2 folds"),
        (["--folds", "200"], "the smallest class has"),
        (["--parallel", "64"], "--parallel: 64 folds at once is more than"),
    ],
)
def test_cv_refuses_folds_it_cannot_cut_before_any_fold_runs(tmp_path, cli, args, message):
    runs = tmp_path / "runs"
    result = cli("cv", write(tmp_path, TINY), *args, "--runs-dir", runs)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())


def test_a_fold_set_in_the_config_is_refused_at_its_line(tmp_path, cli):
    path = write(tmp_path, deep_update(TINY, {"data": {"fold": {"index": 0, "of": 3}}}))
    result = cli("cv", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert f"{path}:" in result.stderr and "data.fold" in result.stderr
    assert "set by dlcli cv" in result.stderr


@pytest.mark.slow
def test_a_failed_fold_is_recorded_the_others_go_on_and_resume_runs_it_again(tmp_path):
    runs = tmp_path / "runs"
    config = write(tmp_path, deep_update(TINY, {"training": {"epochs": 2}}))
    process = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "cv", str(config), "--folds", "3", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    folder = wait_for(lambda: next(runs.glob("tiny-cv-*"), None), what="the cv folder")
    pid = wait_for(lambda: running_pid(folder, "*-f1-*"), what="fold 1 started")
    os.kill(pid, signal.SIGKILL)  # fold 1 dies as out of memory would kill it
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    assert "fold 1 failed: its process was killed by SIGKILL" in err
    record = cv_record(folder)
    assert record["status"] == "failed"
    assert [f["state"] for f in record["folds"]] == ["completed", "failed", "completed"]
    assert record["metrics"]["val"]["accuracy"]["folds"] == 2  # the summary covers the rest
    kept, killed = record["folds"][0], record["folds"][1]["run"]

    resumed = run_dlcli("cv", "--resume", folder, "--runs-dir", runs, "--json")
    assert resumed.returncode == 0, resumed.stderr
    record = cv_record(folder)
    assert record["status"] == "completed" and record["counts"] == {"completed": 3}
    assert record["folds"][0] == kept and record["resumes"] == 1
    assert record["folds"][1]["run"] == killed  # the killed run carried on in its folder
    assert record["metrics"]["val"]["accuracy"]["folds"] == 3


@pytest.mark.slow
def test_an_interrupted_cv_resumes_its_interrupted_fold_in_the_same_run(tmp_path):
    runs = tmp_path / "runs"
    config = write(tmp_path, deep_update(TINY, {"training": {"epochs": 3}}))
    process = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "cv", str(config), "--folds", "2", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    folder = wait_for(lambda: next(runs.glob("tiny-cv-*"), None), what="the cv folder")
    pid = wait_for(lambda: running_pid(folder, "*-f1-*"), what="fold 1 started")
    # Frozen, fold 1 cannot finish before the cv passes Ctrl-C on, however fast the machine.
    os.kill(pid, signal.SIGSTOP)
    process.send_signal(signal.SIGINT)
    wait_for(lambda: signal_pending(pid, signal.SIGINT), what="the cv passing Ctrl-C on")
    os.kill(pid, signal.SIGCONT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"dlcli cv --resume {folder}" in err
    record = cv_record(folder)
    assert record["status"] == "interrupted"
    assert [f["state"] for f in record["folds"]] == ["completed", "interrupted"]
    lost = record["folds"][1]["run"]
    assert json.loads((folder / lost / "run.json").read_text())["status"] == "interrupted"

    resumed = run_dlcli("cv", "--resume", folder.name, "--runs-dir", runs, "--json")
    assert resumed.returncode == 0, resumed.stderr
    record = cv_record(folder)
    assert record["counts"] == {"completed": 2}
    assert record["folds"][1]["run"] == lost  # carried on in its own run folder
    run = json.loads((folder / lost / "run.json").read_text())
    assert run["status"] == "completed" and len(run["resumes"]) == 1
    assert len(list(folder.glob("tiny-f1-*"))) == 1
