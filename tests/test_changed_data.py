"""A data file that changes under a run, through the real CLI.

After training, a run's test split is made from its file with its own preprocessing, or
refused when the file's SHA-256 is no longer the one run.json records (exit 2, naming the
file and the ways on), unless the user asks for a new split with `--allow-changed-data`. A
resume refuses a changed file before it touches the checkpoint. A streamed file truncated or
deleted while training reads it is a failed run (exit 1, run.json says so), not a config
error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow  # each test trains a small table


def write_table(path: Path, rows: int = 600, seed: int = 0) -> Path:
    """Columns a (numbers), colour (categories), b (numbers), label: the label follows a + colour."""
    rng = np.random.default_rng(seed)
    lines = ["a,colour,b,label"]
    for i in range(rows):
        a = rng.normal()
        colour = ["red", "green", "blue", "grey"][i % 4]
        label = (
            "hi" if a + (1.5 if colour == "red" else -0.5 if colour == "blue" else 0) > 0 else "lo"
        )
        lines.append(f"{a:.4f},{colour},{rng.normal():.4f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(tmp_path: Path, data: Path, epochs: int = 8) -> Path:
    config = {
        "name": "changing",
        "seed": 3,
        "data": {"source": "csv", "path": str(data), "target": "label"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"type": "Dense", "units": 2, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": {"type": "adam", "learning_rate": 0.01}, "metrics": ["accuracy"]},
        "training": {"epochs": epochs, "batch_size": 32},
        "output": {"tensorboard": False, "plots": False},
    }
    path = tmp_path / "changing.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(cli, tmp_path: Path, data: Path, *extra: str, epochs: int = 8) -> Path:
    result = cli(
        "train",
        write_config(tmp_path, data, epochs),
        "--runs-dir",
        tmp_path / "runs",
        "--quiet",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def drop_column(path: Path, name: str) -> None:
    lines = path.read_text().splitlines()
    position = lines[0].split(",").index(name)
    path.write_text(
        "\n".join(
            ",".join(c for i, c in enumerate(line.split(",")) if i != position) for line in lines
        )
        + "\n"
    )


def evaluations(run: Path) -> list[dict]:
    path = run / "evaluations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_evaluate_refuses_a_changed_training_file_and_scores_it_only_when_asked(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    run = train(cli, tmp_path, data)
    before = cli("evaluate", run, "--json")
    assert before.exit_code == 0, before.output
    accuracy = json.loads(before.stdout)["metrics"]["accuracy"]
    assert accuracy > 0.8

    # Rows changed (one colour renamed): the file is not the one the run was trained on.
    data.write_text(data.read_text().replace(",grey,", ",gray,"))
    refused = cli("evaluate", run)
    assert refused.exit_code == 2, refused.output
    line = refused.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in refused.output
    assert line.startswith(f"error: {data}: changed since run {run.name} was trained")
    assert "SHA-256" in line and f"--data {data}" in line and "--allow-changed-data" in line
    assert len(evaluations(run)) == 1  # nothing recorded

    # Asked for: a new split, scored with the run's own preprocessing ('gray' is unseen,
    # 'red' keeps its index), so the accuracy stays near the run's instead of collapsing.
    allowed = cli("evaluate", run, "--allow-changed-data", "--json")
    assert allowed.exit_code == 0, allowed.output
    entry = json.loads(allowed.stdout)
    assert entry["data_changed"] == [str(data)]
    assert abs(entry["metrics"]["accuracy"] - accuracy) < 0.15
    assert "changed since the run was trained" in allowed.stderr


def test_evaluate_after_the_training_file_lost_a_column_is_refused_not_scored_wrongly(
    cli, tmp_path
):
    data = write_table(tmp_path / "table.csv")
    run = train(cli, tmp_path, data)
    drop_column(data, "b")
    result = cli("evaluate", run)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {data}: changed since run")
    # Asked to split it anew, the run's own columns are looked for: one is gone.
    result = cli("evaluate", run, "--allow-changed-data")
    assert result.exit_code == 2, result.output
    assert "'b'" in result.stderr and "Traceback" not in result.output
    assert evaluations(run) == []


def test_resume_after_the_data_file_changed_names_the_file_not_the_checkpoint(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    run = train(cli, tmp_path, data, epochs=2)
    drop_column(data, "colour")
    result = cli(
        "train", "--resume", run, "--set", "training.epochs=4", "--runs-dir", tmp_path / "runs"
    )
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.count("\n") == 0, line
    assert line.startswith(f"error: {data}: changed since run {run.name} was trained")
    assert "checkpoint" not in line and "restore the file" in line
    assert json.loads((run / "run.json").read_text())["status"] == "completed"  # untouched


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_streamed_file_damaged_mid_run_is_a_failed_run_exit_1(cli, tmp_path, monkeypatch, damage):
    from dlcli.data import streaming

    data = write_table(tmp_path / "table.csv", rows=3000)
    original = streaming.StreamSplit._blocks
    served = [0]

    def damaging(self, pieces):  # the real file is damaged once training has read from it
        for block in original(self, pieces):
            served[0] += 1
            if served[0] == 3:
                if damage == "truncate":
                    with open(data, "r+b") as handle:
                        handle.truncate(data.stat().st_size // 3)
                else:
                    data.unlink()
            yield block

    monkeypatch.setattr(streaming.StreamSplit, "_blocks", damaging)
    monkeypatch.setattr(
        "dlcli.data.tables.pieces.PIECE", 16 << 10
    )  # many pieces: later ones are read again
    result = cli(
        "train",
        write_config(tmp_path, data, epochs=3),
        "--runs-dir",
        tmp_path / "runs2",
        "--set",
        "data.streaming=true",
    )
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.output
    assert line.startswith("error: the data failed to load mid-run:") and str(data) in line
    (run,) = (tmp_path / "runs2").iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith(
        "the data failed to load mid-run"
    )
