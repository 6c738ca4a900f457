"""`dlcli train --resume RUN`: continue in the same folder, callback state included."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

# Op determinism, so two runs can be compared exactly. Shuffling and the Dropout layer draw
# random numbers: the resumed run matches only if its random state carried on.
EARLY_STOPPING = {
    "seed": 3,
    "model": {
        "layers": [
            {"type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Dropout", "rate": 0.2},
            {"type": "Dense", "activation": "softmax"},
        ]
    },
    "compile": {"optimizer": {"type": "adam", "learning_rate": 0.01}},
    "training": {
        "epochs": 60,
        "batch_size": 64,
        "shuffle": True,
        "early_stopping": {"monitor": "val_loss", "patience": 3, "restore_best_weights": True},
        "reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.5, "patience": 1},
    },
    "runtime": {"deterministic": True},
}


def _rows(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_interrupted_run_with_early_stopping_stops_where_an_uninterrupted_one_does(
    cli, write_config, runs_dir
):
    config = write_config(EARLY_STOPPING)
    whole = cli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert whole.exit_code == 0, whole.stderr
    reference = Path(whole.stdout.strip())
    stop = _metrics(reference)["epochs_run"]
    assert stop < 60, "early stopping must end the reference run"

    # Stop one epoch before early stopping fires: its patience counter is then mid-way,
    # so the resumed run stops at the same epoch only if that state was restored.
    first = cli(
        "train", config, "--runs-dir", runs_dir, "--quiet", "--set", f"training.epochs={stop - 1}"
    )
    assert first.exit_code == 0, first.stderr
    run = Path(first.stdout.strip())
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == stop - 1 and state["early_stopping"]["wait"] > 0
    assert state["rng"], "the Dropout layer's random state is checkpointed"

    resumed = cli(
        "train", "--resume", run, "--runs-dir", runs_dir, "--quiet", "--set", "training.epochs=60"
    )
    assert resumed.exit_code == 0, resumed.stderr
    assert Path(resumed.stdout.strip()) == run

    a, b = _metrics(reference), _metrics(run)
    assert (b["epochs_run"], b["best_epoch"]) == (a["epochs_run"], a["best_epoch"])
    assert b["test"] == a["test"]
    rows_a, rows_b = _rows(reference), _rows(run)
    assert [r["epoch"] for r in rows_b] == [str(e) for e in range(1, stop + 1)]
    for name in ("val_loss", "lr"):
        assert rows_b[-1][name] == rows_a[-1][name], name
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed"
    assert len(record["resumes"]) == 1 and record["resumes"][0]["from_epoch"] == stop - 1


@pytest.mark.slow
def test_resume_refuses_changes_other_than_epochs_and_runtime(cli, write_config, runs_dir):
    first = cli(
        "train", write_config(), "--runs-dir", runs_dir, "--quiet", "--set", "training.epochs=1"
    )
    assert first.exit_code == 0, first.stderr
    run = first.stdout.strip()
    refused = cli(
        "train",
        "--resume",
        run,
        "--runs-dir",
        runs_dir,
        "--set",
        "model.layers.0.units=64",
        "--set",
        "training.batch_size=16",
        "--set",
        "training.epochs=2",
    )
    assert refused.exit_code == 2
    assert "model.layers.0.units" in refused.stderr and "training.batch_size" in refused.stderr
    assert "training.epochs" not in refused.stderr.split("differ from the run:")[1]
    assert json.loads((Path(run) / "run.json").read_text())["status"] == "completed"

    allowed = cli(
        "train",
        "--resume",
        run,
        "--runs-dir",
        runs_dir,
        "--quiet",
        "--set",
        "training.epochs=2",
        "--set",
        "runtime.steps_per_execution=1",
    )
    assert allowed.exit_code == 0, allowed.stderr
    assert _metrics(Path(run))["epochs_run"] == 2


@pytest.mark.slow
def test_resume_of_a_run_with_no_completed_epoch_starts_it_cleanly(
    cli, write_config, runs_dir, tmp_path
):
    first = cli(
        "train", write_config(), "--runs-dir", runs_dir, "--quiet", "--set", "training.epochs=2"
    )
    assert first.exit_code == 0, first.stderr
    run = tmp_path / "fresh-run"
    shutil.copytree(first.stdout.strip(), run)
    shutil.rmtree(run / "checkpoints")
    for name in ("metrics.json", "model.keras"):
        (run / name).unlink()
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))

    resumed = cli("train", "--resume", run, "--quiet")
    assert resumed.exit_code == 0, resumed.stderr
    assert [r["epoch"] for r in _rows(run)] == ["1", "2"]
    assert _metrics(run)["epochs_run"] == 2


def test_resume_needs_more_epochs_than_the_run_has(cli, trained_run, tmp_path):
    run = tmp_path / "done"
    shutil.copytree(trained_run, run)
    result = cli("train", "--resume", run)
    assert result.exit_code == 2
    assert "already has 10 epochs" in result.stderr and "--set training.epochs=" in result.stderr
