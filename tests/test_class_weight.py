"""`training.class_weight`: `balanced` or a weight per class label, through the real CLI.

The data is scikit-learn's breast_cancer table made clearly imbalanced (every benign sample,
40 malignant ones: about 9 to 1) and hard (three weakly informative columns), with text
labels. Trained without weights, a model then predicts the rare class for almost no test
sample; with balanced weights for many more; with a huge weight on the rare class for most.
The number of test samples predicted malignant comes from the run's confusion matrix, so
the checks hold whatever the machine's speed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_dlcli

from dlcli.config.load import load_config
from dlcli.data.dataset import load_data

COLUMNS = [1, 4, 8]  # mean texture, mean smoothness, mean symmetry: weak alone and together
RARE = 40  # malignant samples kept (of 212), against 357 benign
SMALL_MODEL = {
    "layers": [
        {"type": "Dense", "units": 16, "activation": "relu"},
        {"type": "Dense", "activation": "softmax"},
    ]
}
BACKENDS = [name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name)]


def cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The imbalanced breast_cancer rows: features (3 columns), targets (0: malignant)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rows = np.sort(
        np.concatenate([np.flatnonzero(data.target == 0)[:RARE], np.flatnonzero(data.target)])
    )
    return data.data[rows][:, COLUMNS], data.target[rows]


def write_cancer(path: Path) -> Path:
    x, y = cancer_arrays()
    lines = ["texture,smoothness,symmetry,diagnosis"]
    for features, target in zip(x, y):
        label = "malignant" if target == 0 else "benign"
        lines.append(",".join(f"{v:.6g}" for v in features) + f",{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def cancer_config(path: Path, class_weight=None, epochs: int = 10, **data) -> dict:
    config = {
        "name": "cancer",
        "seed": 3,
        "data": {"source": "csv", "path": str(path), "target": "diagnosis", **data},
        "model": SMALL_MODEL,
        "compile": {"optimizer": {"type": "adam", "learning_rate": 0.01}, "metrics": ["accuracy"]},
        "training": {"epochs": epochs, "batch_size": 32},
        "output": {"tensorboard": False, "plots": False},
    }
    if class_weight is not None:
        config["training"]["class_weight"] = class_weight
    return config


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def trained(result) -> Path:
    assert result.exit_code == 0, result.stderr
    return Path(json.loads(result.stdout)["run"])


def predicted(run: Path) -> dict:
    """How many test samples the run's model predicted as each class (confusion matrix)."""
    with (run / "confusion_matrix.csv").open() as handle:
        rows = list(csv.reader(handle))
    labels = rows[0][1:]
    return {label: sum(int(row[1 + i]) for row in rows[1:]) for i, label in enumerate(labels)}


def recorded(run: Path):
    return json.loads((run / "run.json").read_text()).get("class_weight")


def expected_balanced(config_path: Path) -> dict:
    """scikit-learn's balanced weights on the training split's targets (the test and
    validation splits set apart), by label."""
    from sklearn.utils.class_weight import compute_class_weight

    data = load_data(load_config(config_path))
    targets = np.asarray(data.labels)[data.train.y]
    classes = np.unique(targets)
    weights = compute_class_weight("balanced", classes=classes, y=targets)
    return dict(zip(classes.tolist(), weights.tolist()))


def train(cli, config: Path, runs: Path, *extra) -> Path:
    return trained(cli("train", config, "--runs-dir", runs, "--json", "--quiet", *extra))


# ---------------------------------------------------------------- what is learned


@pytest.mark.slow
def test_balanced_is_scikit_learns_weights_on_the_training_split_in_run_json(
    cli, tmp_path, runs_dir
):
    data = write_cancer(tmp_path / "cancer.csv")
    config = write_yaml(tmp_path / "c.yaml", cancer_config(data, "balanced", epochs=1))
    run = train(cli, config, runs_dir)
    weights = recorded(run)
    expected = expected_balanced(config)
    assert list(weights) == ["benign", "malignant"]  # labels.json's order
    assert weights == pytest.approx(expected, rel=1e-12)
    # On the training split, not the whole table: the two differ in the third digit.
    whole = len(cancer_arrays()[1]) / (2 * RARE)
    assert weights["malignant"] != pytest.approx(whole, rel=1e-6)
    assert weights["malignant"] > 4 * weights["benign"]
    checked = cli("validate", config, "--json")  # validate reports the weights train uses
    assert checked.exit_code == 0, checked.stderr
    assert json.loads(checked.stdout)["class_weight"] == weights
    shown = cli("validate", config)
    assert f"malignant {weights['malignant']:.4g}" in shown.stdout


@pytest.mark.slow
def test_balanced_weights_make_the_model_predict_the_rare_class_more(cli, tmp_path, runs_dir):
    data = write_cancer(tmp_path / "cancer.csv")
    plain = train(cli, write_yaml(tmp_path / "a.yaml", cancer_config(data)), runs_dir)
    weighted = train(
        cli, write_yaml(tmp_path / "b.yaml", cancer_config(data, "balanced")), runs_dir
    )
    assert recorded(plain) is None
    unweighted_rare, balanced_rare = predicted(plain)["malignant"], predicted(weighted)["malignant"]
    assert balanced_rare >= unweighted_rare + 5, (unweighted_rare, balanced_rare)


@pytest.mark.slow
def test_a_huge_weight_on_a_text_label_makes_the_model_predict_that_class(cli, tmp_path, runs_dir):
    data = write_cancer(tmp_path / "cancer.csv")
    config = write_yaml(tmp_path / "c.yaml", cancer_config(data, {"malignant": 1000}))
    run = train(cli, config, runs_dir)
    assert recorded(run) == {"benign": 1.0, "malignant": 1000.0}
    counts = predicted(run)
    assert counts["malignant"] > counts["benign"], counts


@pytest.mark.slow
def test_only_the_training_loss_is_weighted(cli, tmp_path, runs_dir):
    """A weight of 1000 on every class multiplies the training loss, not the validation or
    test loss (Keras's class_weight weighs the training loss only)."""
    data = write_cancer(tmp_path / "cancer.csv")
    config = write_yaml(
        tmp_path / "c.yaml",
        cancer_config(data, {"benign": 1000, "malignant": 1000}, epochs=1),
    )
    run = train(cli, config, runs_dir)
    history = list(csv.DictReader((run / "history.csv").open()))
    assert float(history[0]["loss"]) > 50
    assert float(history[0]["val_loss"]) < 5
    assert json.loads((run / "metrics.json").read_text())["test"]["loss"] < 5


@pytest.mark.slow
def test_integer_classes_take_int_or_text_keys(cli, write_config, runs_dir):
    config = write_config({"training": {"epochs": 1, "class_weight": {3: 5, "7": 0.5}}})
    run = train(cli, config, runs_dir)
    expected = {str(label): 1.0 for label in range(10)} | {"3": 5.0, "7": 0.5}
    assert recorded(run) == expected


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True])
def test_one_hot_targets_are_weighted_by_class_index(cli, tmp_path, runs_dir, streaming):
    x, y = cancer_arrays()
    np.savez(tmp_path / "cancer.npz", x_train=x, y_train=np.eye(2, dtype="float32")[y])
    config = cancer_config(tmp_path / "cancer.npz", {0: 1000}, streaming=streaming)
    config["data"] = {k: v for k, v in config["data"].items() if k != "target"}
    config["data"]["source"] = "npz"
    config["compile"]["loss"] = "categorical_crossentropy"
    run = train(cli, write_yaml(tmp_path / "c.yaml", config), runs_dir)
    assert json.loads((run / "run.json").read_text())["data"]["streaming"] is streaming
    assert recorded(run) == {"0": 1000.0, "1": 1.0}
    counts = predicted(run)
    assert counts["0"] > counts["1"], counts


@pytest.mark.slow
def test_a_streamed_table_is_weighted_as_in_memory(cli, tmp_path, runs_dir):
    data = write_cancer(tmp_path / "cancer.csv")
    whole = write_yaml(tmp_path / "a.yaml", cancer_config(data, "balanced", epochs=1))
    streamed = write_yaml(
        tmp_path / "b.yaml", cancer_config(data, "balanced", epochs=1, streaming=True)
    )
    in_memory, by_pieces = train(cli, whole, runs_dir), train(cli, streamed, runs_dir)
    assert json.loads((by_pieces / "run.json").read_text())["data"]["streaming"] is True
    assert recorded(by_pieces) == recorded(in_memory) == pytest.approx(expected_balanced(whole))
    # ...and the training is weighted: a huge weight on the rare class makes it predicted.
    huge = write_yaml(tmp_path / "c.yaml", cancer_config(data, {"malignant": 1000}, streaming=True))
    counts = predicted(train(cli, huge, runs_dir))
    assert counts["malignant"] > counts["benign"], counts


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_weighs_the_classes(tmp_path, runs_dir, backend):
    data = write_cancer(tmp_path / "cancer.csv")
    config = cancer_config(data, {"malignant": 1000})
    config["runtime"] = {"backend": backend}
    result = run_dlcli(
        "train", write_yaml(tmp_path / "c.yaml", config), "--runs-dir", runs_dir, "--json"
    )
    assert result.returncode == 0, result.stderr
    run = Path(json.loads(result.stdout)["run"])
    assert json.loads((run / "run.json").read_text())["versions"]["backend"] == backend
    assert recorded(run) == {"benign": 1.0, "malignant": 1000.0}
    counts = predicted(run)
    assert counts["malignant"] > counts["benign"], counts


@pytest.mark.slow
def test_a_resumed_run_keeps_its_weights(cli, tmp_path, runs_dir):
    data = write_cancer(tmp_path / "cancer.csv")
    config = write_yaml(tmp_path / "c.yaml", cancer_config(data, "balanced", epochs=2))
    run = train(cli, config, runs_dir)
    before = recorded(run)
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["class_weight"] == (
        "balanced"
    )
    result = cli(
        "train", "--resume", run, "--runs-dir", runs_dir, "--set", "training.epochs=4", "--quiet"
    )
    assert result.exit_code == 0, result.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and len(record["resumes"]) == 1
    assert record["class_weight"] == before
    assert len((run / "history.csv").read_text().splitlines()) == 5


@pytest.mark.slow
def test_several_processes_weigh_their_share(tmp_path, runs_dir):
    data = write_cancer(tmp_path / "cancer.csv")
    config = cancer_config(data, {"malignant": 1000})
    config["runtime"] = {"backend": "jax"}
    path = write_yaml(tmp_path / "c.yaml", config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DLCLI_PEER_TIMEOUT": "8", "DLCLI_START_TIMEOUT": "20", "NO_COLOR": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dlcli", "train", str(path), "--runs-dir", str(runs_dir)]
            + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
            + ["--process-id", str(index), "--json", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        for index in range(2)
    ]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    run = Path(json.loads(outputs[0][0])["run"])
    assert json.loads((run / "run.json").read_text())["processes"]["count"] == 2
    assert recorded(run) == {"benign": 1.0, "malignant": 1000.0}
    counts = predicted(run)
    assert counts["malignant"] > counts["benign"], counts


# ---------------------------------------------------------------- mistakes: exit 2


def refused(result, where: str, *needles) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {where}:"), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def line_of(path: Path, start: str) -> int:
    """The number of the config's line that begins (indentation aside) with `start`."""
    lines = path.read_text().splitlines()
    return 1 + next(i for i, line in enumerate(lines) if line.strip().startswith(start))


@pytest.mark.parametrize(
    ("weights", "needles"),
    [
        ({"malignant": -1}, ["'malignant'", "0 or more", "-1"]),
        ({"malignant": float("inf")}, ["finite", "inf"]),
        ({"malignant": float("nan")}, ["finite", "nan"]),
        ({"malignant": "lots"}, ["must be a number", "'lots'"]),
        ({"malignant": True}, ["must be a number", "True"]),
        ({}, ["names no class"]),
        ("balance", ["'balanced'", "did you mean 'balanced'?"]),
        ([1, 2], ["expected 'balanced' or a weight per class label"]),
    ],
)
def test_a_bad_class_weight_is_refused_at_its_line(cli, tmp_path, runs_dir, weights, needles):
    data = write_cancer(tmp_path / "cancer.csv")
    config = write_yaml(tmp_path / "c.yaml", cancer_config(data, weights))
    result = cli("train", config, "--runs-dir", runs_dir)
    refused(result, f"{config}:{line_of(config, 'class_weight:')}", "class_weight", *needles)
    assert not runs_dir.exists()


def test_an_unknown_label_is_refused_at_its_line_with_a_did_you_mean(cli, tmp_path, runs_dir):
    data = write_cancer(tmp_path / "cancer.csv")
    config = write_yaml(tmp_path / "c.yaml", cancer_config(data, {"benign": 1, "Malignent": 3}))
    result = cli("train", config, "--runs-dir", runs_dir)
    refused(
        result,
        f"{config}:{line_of(config, 'Malignent:')}",
        "no class 'Malignent'",
        "did you mean 'malignant'?",
        "the classes are: benign, malignant",
    )
    assert not runs_dir.exists()
    other = write_yaml(tmp_path / "d.yaml", cancer_config(data, {"benign": 1}))
    by_set = cli("validate", other, "--set", "training.class_weight.malignat=2")
    refused(by_set, "--set training.class_weight.malignat=2", "did you mean 'malignant'?")


def test_a_number_that_is_no_class_is_refused(cli, write_config, runs_dir):
    config = write_config({"training": {"class_weight": {12: 2}}})
    result = cli("train", config, "--runs-dir", runs_dir)
    refused(result, f"{config}:{line_of(config, '12:')}", "no class 12", "0, 1, 2")


def test_zero_weight_on_every_class_is_refused(cli, tmp_path, runs_dir):
    data = write_cancer(tmp_path / "cancer.csv")
    config = write_yaml(tmp_path / "c.yaml", cancer_config(data, {"benign": 0, "malignant": 0}))
    result = cli("train", config, "--runs-dir", runs_dir)
    refused(result, f"{config}:{line_of(config, 'class_weight:')}", "weighs 0")
    assert not runs_dir.exists()


def test_class_weight_on_a_regression_is_refused(cli, write_config, runs_dir):
    config = write_config(
        {
            "data": {"source": "diabetes"},
            "model": {"layers": [{"type": "Dense", "units": 8}, {"type": "Dense", "units": 1}]},
            "compile": {"loss": "mean_squared_error", "metrics": []},
            "training": {"class_weight": "balanced"},
        }
    )
    result = cli("train", config, "--runs-dir", runs_dir)
    refused(result, f"{config}:{line_of(config, 'class_weight:')}", "regression")
    assert not runs_dir.exists()
