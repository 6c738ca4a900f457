"""`dlcli evaluate`, `predict` and `validate` on a real finished run."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, run_dlcli, run_python
from sklearn.datasets import load_digits


def test_evaluate_latest_prints_the_runs_test_metrics(cli, trained_run):
    result = cli("evaluate", "--runs-dir", trained_run.parent, "--json")
    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)
    expected = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert entry["split"] == "test" and entry["passed"] is True
    for name, value in expected.items():
        assert abs(entry["metrics"][name] - value) < 1e-5
    last = json.loads((trained_run / "evaluations.jsonl").read_text().splitlines()[-1])
    assert last["split"] == "test" and last["metrics"] == entry["metrics"]


def test_evaluate_other_splits_and_a_data_file(cli, trained_run, tmp_path):
    before = (
        len((trained_run / "evaluations.jsonl").read_text().splitlines())
        if (trained_run / "evaluations.jsonl").exists()
        else 0
    )
    val = cli("evaluate", trained_run, "--split", "val", "--json")
    assert val.exit_code == 0, val.stderr
    assert json.loads(val.stdout)["samples"] == 288

    digits = load_digits()
    data = tmp_path / "digits_sample.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*digits.feature_names, "target"])
        for row, target in zip(digits.data[:100], digits.target[:100]):
            writer.writerow([*row, target])
    on_file = cli("evaluate", trained_run, "--data", data, "--json")
    assert on_file.exit_code == 0, on_file.stderr
    entry = json.loads(on_file.stdout)
    assert entry["data"] == str(data.resolve()) and entry["samples"] == 100
    assert entry["metrics"]["accuracy"] > 0.5
    lines = (trained_run / "evaluations.jsonl").read_text().splitlines()
    assert len(lines) == before + 2


def test_gates_turn_metrics_into_exit_codes(cli, trained_run):
    ok = cli("evaluate", trained_run, "--fail-under", "accuracy=0.5", "--fail-over", "loss=10")
    assert ok.exit_code == 0, ok.stderr
    under = cli("evaluate", trained_run, "--fail-under", "accuracy=1.01")
    assert under.exit_code == 3
    assert (
        "accuracy" in under.stderr
        and "under 1.01" in under.stderr
        and "Traceback" not in under.stderr
    )
    over = cli("evaluate", trained_run, "--fail-over", "loss=0", "--json")
    assert over.exit_code == 3
    assert json.loads(over.stdout)["passed"] is False


def test_predict_answers_with_original_labels_and_probabilities(cli, trained_run, tmp_path):
    digits = load_digits()
    features = tmp_path / "features.csv"
    with open(features, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(digits.feature_names)
        writer.writerows(digits.data[:50])
    result = cli("predict", trained_run, features, "--proba")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 50
    assert list(rows[0]) == ["prediction", *[f"proba_{i}" for i in range(10)]]
    for row in rows:
        probs = [float(row[f"proba_{i}"]) for i in range(10)]
        assert abs(sum(probs) - 1) < 1e-3
        assert int(row["prediction"]) == int(np.argmax(probs))
    accuracy = np.mean([int(r["prediction"]) == t for r, t in zip(rows, digits.target[:50])])
    assert accuracy > 0.6

    npz = tmp_path / "features.npz"
    np.savez(npz, x=digits.data[:5])
    out = tmp_path / "predictions.csv"
    from_npz = cli("predict", trained_run, npz, "--output", out)
    assert from_npz.exit_code == 0, from_npz.stderr
    assert out.read_text().splitlines()[1:] == [r["prediction"] for r in rows[:5]]


@pytest.mark.slow
def test_predict_uses_string_labels_of_a_csv_run(cli, runs_dir, tmp_path):
    train = cli(
        "train",
        CONFIGS / "wine_csv.yaml",
        "--runs-dir",
        runs_dir,
        "--quiet",
        "--set",
        "training.epochs=15",
    )
    assert train.exit_code == 0, train.stderr
    run = Path(train.stdout.strip())
    assert json.loads((run / "labels.json").read_text()) == ["barbera", "barolo", "grignolino"]
    resolved = (run / "config.yaml").read_text()
    assert str((CONFIGS / "data" / "wine.csv").resolve()) in resolved
    sample = tmp_path / "wines.csv"
    lines = (CONFIGS / "data" / "wine.csv").read_text().splitlines()
    sample.write_text(
        "\n".join([lines[0], *lines[1:4], *lines[-3:]]) + "\n"
    )  # target column is ignored
    result = cli("predict", run, sample)
    assert result.exit_code == 0, result.stderr
    predictions = result.stdout.splitlines()[1:]
    assert set(predictions) <= {"barbera", "barolo", "grignolino"}
    assert predictions[:3].count("barolo") >= 2


@pytest.mark.slow
def test_regression_run_predicts_numbers(cli, runs_dir, tmp_path):
    train = cli(
        "train",
        CONFIGS / "diabetes_regression.yaml",
        "--runs-dir",
        runs_dir,
        "--quiet",
        "--set",
        "training.epochs=30",
    )
    assert train.exit_code == 0, train.stderr
    run = Path(train.stdout.strip())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["mean_absolute_error"] < 80  # predicting the mean gives ~65
    assert not (run / "labels.json").exists()
    from sklearn.datasets import load_diabetes

    npz = tmp_path / "patients.npz"
    np.savez(npz, x=load_diabetes().data[:4])
    result = cli("predict", run, npz)
    assert result.exit_code == 0, result.stderr
    values = [float(v) for v in result.stdout.splitlines()[1:]]
    assert len(values) == 4 and all(0 < v < 400 for v in values)


def test_validate_prints_layers_and_parameter_counts_without_a_run(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("validate", CONFIGS / "digits_mlp.yaml")
    assert result.exit_code == 0, result.stderr
    assert "total parameters: 17,226" in result.stdout and "trainable: 17,226" in result.stdout
    for layer in ("Normalization", "Dense", "Dropout"):
        assert layer in result.stdout
    assert not (tmp_path / "runs").exists()


def test_evaluate_refuses_a_model_file_that_is_not_a_keras_model(cli, trained_run, tmp_path):
    copy = tmp_path / "copied-run"
    shutil.copytree(trained_run, copy)
    (copy / "model.keras").write_bytes(b"not a zip file at all")
    result = cli("evaluate", copy)
    assert result.exit_code == 2
    assert "model.keras" in result.stderr and "Traceback" not in result.stderr


def test_train_and_evaluate_write_a_confusion_matrix(cli, trained_run, tmp_path):
    with open(trained_run / "confusion_matrix.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["true \\ predicted", *[str(i) for i in range(10)]]
    counts = np.array([[int(c) for c in row[1:]] for row in rows[1:]])
    assert counts.sum() == 360  # the test split
    accuracy = json.loads((trained_run / "metrics.json").read_text())["test"]["accuracy"]
    assert abs(np.trace(counts) / counts.sum() - accuracy) < 1e-6
    assert (trained_run / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    copy = tmp_path / "run-copy"
    shutil.copytree(trained_run, copy)
    result = cli("evaluate", copy, "--split", "val", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["confusion_matrix"] == "confusion_matrix_val.csv"
    with open(copy / "confusion_matrix_val.csv", newline="") as handle:
        val = np.array([[int(c) for c in row[1:]] for row in list(csv.reader(handle))[1:]])
    assert val.sum() == 288


def test_predict_json_gives_numbers(cli, trained_run, tmp_path):
    npz = tmp_path / "x.npz"
    np.savez(npz, x=load_digits().data[:3])
    result = cli("predict", trained_run, npz, "--proba", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["count"] == 3
    first = payload["predictions"][0]
    assert isinstance(first["prediction"], int) and isinstance(first["proba_0"], float)
    assert abs(sum(v for k, v in first.items() if k.startswith("proba_")) - 1) < 1e-3


def test_evaluate_on_an_npz_file(cli, trained_run, tmp_path):
    digits = load_digits()
    npz = tmp_path / "labeled.npz"
    np.savez(npz, x_test=digits.data[:120], y_test=digits.target[:120])
    copy = tmp_path / "run-copy"
    shutil.copytree(trained_run, copy)
    result = cli("evaluate", copy, "--data", npz, "--json")
    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)
    assert entry["samples"] == 120 and entry["metrics"]["accuracy"] > 0.5
    assert (copy / "confusion_matrix_data.csv").is_file()


@pytest.mark.slow
def test_evaluate_refuses_a_data_file_changed_since_training_unless_asked(
    cli, write_config, runs_dir, tmp_path
):
    data = tmp_path / "wine.csv"
    shutil.copy(CONFIGS / "data" / "wine.csv", data)
    config = write_config(
        {
            "data": {"source": "csv", "path": str(data), "target": "cultivar"},
            "model": {
                "layers": [
                    {"type": "Dense", "units": 8, "activation": "relu"},
                    {"type": "Dense", "activation": "softmax"},
                ]
            },
        }
    )
    train = cli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert train.exit_code == 0, train.stderr
    run = train.stdout.strip()
    unchanged = json.loads(cli("evaluate", run, "--json").stdout)
    assert "warning" not in unchanged
    data.write_text(data.read_text() + data.read_text().splitlines()[1] + "\n")
    refused = cli("evaluate", run, "--json")
    assert refused.exit_code == 2, refused.stderr
    assert json.loads(refused.stdout)["error"].startswith(f"{data.resolve()}: changed since run")
    changed = cli("evaluate", run, "--json", "--allow-changed-data")
    assert changed.exit_code == 0, changed.stderr
    assert json.loads(changed.stdout)["warning"].startswith(
        f"{data.resolve()} changed since the run was trained"
    )
    assert "changed since the run was trained" in changed.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_test_metrics_are_what_keras_evaluate_gives_regularization_included(
    write_config, runs_dir, backend
):
    # dlcli scores the test split and makes the confusion matrix in one pass; its loss must
    # still be Keras's own: the mean loss plus the weight and activity penalties.
    config = write_config(
        {
            "model": {
                "layers": [
                    {
                        "type": "Dense",
                        "units": 32,
                        "activation": "relu",
                        "kernel_regularizer": "l2",
                        "activity_regularizer": "l1",
                    },
                    {"type": "Dense", "units": 10, "activation": "softmax"},
                ]
            },
            "compile": {"metrics": ["accuracy", "sparse_top_k_categorical_accuracy"]},
            "runtime": {"backend": backend},
        }
    )
    trained = run_dlcli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert trained.returncode == 0, trained.stderr
    run = Path(trained.stdout.strip().splitlines()[-1])
    code = f"""
import json, keras
from dlcli.config.load import load_config
from dlcli.data.dataset import load_data
test = load_data(load_config({str(run / "config.yaml")!r})).test
model = keras.saving.load_model({str(run / "model.keras")!r})
scores = model.evaluate(test.x, test.y, batch_size=64, verbose=0, return_dict=True)
predicted = model.predict(test.x, verbose=0).argmax(-1)
matrix = [[int(((test.y == t) & (predicted == p)).sum()) for p in range(10)] for t in range(10)]
print(json.dumps({{"scores": scores, "matrix": matrix}}))
"""
    done = run_python(code, env={"KERAS_BACKEND": backend})
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    recorded = json.loads((run / "metrics.json").read_text())["test"]
    assert set(recorded) == set(found["scores"])
    for name, value in found["scores"].items():
        assert abs(recorded[name] - value) < 1e-4 * max(1.0, abs(value)), (name, recorded, found)
    assert recorded["loss"] > 0.05  # the penalties are in it
    with open(run / "confusion_matrix.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert [[int(c) for c in row[1:]] for row in rows] == found["matrix"]
