"""A regression target standardised inside the run (`data.scale_target`), through the real CLI
on scikit-learn's diabetes (targets 25 to 346, mean about 152): the network learns the
standardised target and the model's last layer gives values in the target's units."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, deep_update

from dlcli.config.load import load_config
from dlcli.data.dataset import load_data

# Plain SGD on the raw squared error of diabetes' targets diverges at once (the gradients
# are the size of the targets); on the standardised target the same settings train.
SGD_REGRESSION = {
    "name": "reg",
    "seed": 3,
    "data": {"source": "diabetes"},
    "model": {
        "layers": [
            {"type": "Dense", "units": 16, "activation": "relu"},
            {"type": "Dense", "units": 1},
        ]
    },
    "compile": {
        "optimizer": {"type": "sgd", "learning_rate": 0.01},
        "loss": "mse",
        "metrics": ["mae"],
    },
    "training": {"epochs": 15, "batch_size": 32},
    "output": {"tensorboard": False, "plots": False},
}


@pytest.mark.slow
def test_a_standardised_target_trains_where_the_raw_one_diverges(cli, write_config, tmp_path):
    runs = tmp_path / "runs"
    result = cli("train", write_config(SGD_REGRESSION), "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    run = Path(printed["run"])
    y = load_data(load_config(run / "config.yaml")).train.y.astype("float64")
    scale = json.loads((run / "run.json").read_text())["data"]["target_scale"]
    assert scale["mean"] == pytest.approx([y.mean()]) and scale["std"] == pytest.approx([y.std()])
    # mae is in the target's units, and well below what predicting the mean gives (about 64)
    assert printed["test"]["mae"] < 60
    assert "dlcli_target_units" in (run / "summary.txt").read_text()

    rows = np.load(_diabetes_npz(tmp_path))["x"]
    predicted = cli("predict", run, tmp_path / "x.npz")
    assert predicted.exit_code == 0, predicted.stderr
    values = [float(r["prediction"]) for r in csv.DictReader(io.StringIO(predicted.stdout))]
    assert len(values) == len(rows)
    assert 60 < np.mean(values) < 260  # target units, not standardised ones near 0

    raw = cli(
        "train",
        write_config(
            deep_update(SGD_REGRESSION, {"data": {"scale_target": False}}), name="raw.yaml"
        ),
        "--runs-dir",
        runs,
    )
    assert raw.exit_code == 1 and "loss became NaN" in raw.stderr


def _diabetes_npz(tmp_path: Path) -> Path:
    from sklearn.datasets import load_diabetes

    path = tmp_path / "x.npz"
    np.savez(path, x=load_diabetes().data[:20].astype("float32"))
    return path


def test_scale_target_on_a_classification_is_refused_at_its_line(cli, write_config, tmp_path):
    path = write_config(deep_update(TINY, {"data": {"scale_target": True}}))
    result = cli("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert f"{path}:" in result.stderr and "data.scale_target" in result.stderr
    assert "classification" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
