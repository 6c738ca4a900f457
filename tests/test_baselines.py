"""Baselines beside every result: what the run's test split scores without deep learning
(`output.baselines`), scored with the run's own loss and metrics, through the real CLI.

Each expected number is computed here from the splits dlcli made (`load_data` of the same
config gives them again): the majority class (or mean) of the training split, and
scikit-learn's gradient boosting fitted on the training rows with its default settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, deep_update

from dlcli.config.load import load_config
from dlcli.data.dataset import load_data

EPS = 1e-7  # Keras clips probabilities to [EPS, 1 - EPS] in its cross-entropies
LOSS = {"rel": 1e-4, "abs": 1e-5}  # float32 (Keras) against float64 (here)
SHARE = {"abs": 1e-6}


def write(tmp_path: Path, changes: dict, name: str = "cfg.yaml") -> Path:
    import yaml

    path = tmp_path / name
    config = deep_update(TINY, {"training": {"epochs": 1}, "output": {"baselines": "auto"}})
    path.write_text(yaml.safe_dump(deep_update(config, changes), sort_keys=False))
    return path


def train(cli, config: Path, runs: Path, *extra) -> tuple[Path, object]:
    result = cli("train", config, "--runs-dir", runs, *extra)
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1]), result


def read(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


def splits(config: Path):
    """The run's splits, as dlcli made them."""
    return load_data(load_config(str(config)))


def codes(x: np.ndarray, categorical: list[int]) -> np.ndarray:
    """A table's categorical columns (vocabulary index, 0 for missing) as integer codes
    from 0, missing as NaN; numbers as read."""
    x = np.array(x, dtype="float64")
    for j in categorical:
        x[:, j] = np.where(x[:, j] < 1, np.nan, x[:, j] - 1)
    return x


def boosted(data, seed: int, categorical=()) -> np.ndarray:
    """Gradient boosting, default settings, fitted on the training split: test outputs."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    categorical = list(categorical)
    x_train, x_test = codes(data.train.x, categorical), codes(data.test.x, categorical)
    y = np.asarray(data.train.y)
    if data.task == "regression":
        model = HistGradientBoostingRegressor(random_state=seed)
        return model.fit(x_train, y.reshape(-1)).predict(x_test)
    model = HistGradientBoostingClassifier(
        categorical_features=categorical or None, random_state=seed
    )
    model.fit(x_train, y.argmax(1) if y.ndim == 2 else y)
    return model.predict_proba(x_test)


def class_scores(probabilities: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy and (sparse or one-hot) categorical cross-entropy of class probabilities."""
    y = y.argmax(1) if y.ndim == 2 else y
    p = np.clip(probabilities / probabilities.sum(1, keepdims=True), EPS, 1 - EPS)
    return {
        "accuracy": float((probabilities.argmax(1) == y).mean()),
        "loss": float(-np.log(p[np.arange(len(y)), y]).mean()),
    }


def assert_scores(found: dict, expected: dict) -> None:
    assert set(found) == {*expected, "fit_s"}, found
    assert found["fit_s"] >= 0
    for name, value in expected.items():
        tolerance = LOSS if name in ("loss", "mse", "mae") else SHARE
        assert found[name] == pytest.approx(value, **tolerance), name


def majority_share(data) -> float:
    """The test share of the training split's most frequent class."""
    y_train, y_test = np.asarray(data.train.y), np.asarray(data.test.y)
    if y_train.ndim == 2:
        y_train, y_test = y_train.argmax(1), y_test.argmax(1)
    return float((y_test == np.bincount(y_train).argmax()).mean())


def frequencies(data) -> np.ndarray:
    y = np.asarray(data.train.y)
    y = y.argmax(1) if y.ndim == 2 else y
    share = np.bincount(y, minlength=data.n_classes) / len(y)
    return np.tile(share, (len(data.test), 1))


# ---------------------------------------------------------------- in-memory arrays


@pytest.mark.slow
def test_wine_gets_majority_and_gradient_boosting_in_metrics_json_and_the_table(cli, tmp_path):
    config = write(
        tmp_path,
        {
            "data": {"source": "wine", "validation_split": 0.3, "test_split": 0.3},
            "model": {
                "layers": [
                    {"type": "Dense", "units": 16, "activation": "relu"},
                    {"type": "Dense", "activation": "softmax"},
                ]
            },
        },
    )
    run, result = train(cli, config, tmp_path / "runs")
    metrics, record = read(run, "metrics.json"), read(run, "run.json")
    data = splits(config)

    baselines = metrics["baselines"]
    assert list(baselines) == ["majority", "gradient_boosting"]
    assert set(baselines["majority"]) == {*metrics["test"], "fit_s"}
    assert baselines["majority"]["accuracy"] == pytest.approx(majority_share(data), **SHARE)
    assert_scores(baselines["majority"], class_scores(frequencies(data), data.test.y))
    assert_scores(baselines["gradient_boosting"], class_scores(boosted(data, 7), data.test.y))
    assert baselines["gradient_boosting"]["accuracy"] > 0.8 > baselines["majority"]["accuracy"]
    assert record["timings"]["baselines_s"] >= baselines["gradient_boosting"]["fit_s"] > 0

    table = result.stderr
    lines = [line for line in table.splitlines() if "baseline" in line]
    assert len(lines) == 2, table
    assert "majority baseline" in lines[0] and "gradient boosting baseline" in lines[1]
    share = f"{baselines['majority']['accuracy']:.4f}"
    assert share in lines[0], table
    assert table.index("test") < table.index("majority baseline")


@pytest.mark.slow
def test_digits_pixels_get_the_majority_baseline_alone(cli, tmp_path):
    run, _ = train(cli, write(tmp_path, {}), tmp_path / "runs", "--quiet")
    baselines = read(run, "metrics.json")["baselines"]
    assert list(baselines) == ["majority"]  # boosting is the alternative for tables, not pixels
    assert baselines["majority"]["accuracy"] == pytest.approx(
        majority_share(splits(tmp_path / "cfg.yaml")), **SHARE
    )


@pytest.mark.slow
def test_iris_with_one_hot_labels_scores_the_class_frequencies(cli, tmp_path):
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    np.savez(tmp_path / "iris.npz", x_train=x, y_train=np.eye(3)[y])
    config = write(
        tmp_path,
        {
            "data": {"source": "npz", "path": str(tmp_path / "iris.npz")},
            "model": {
                "layers": [
                    {"type": "Dense", "units": 8, "activation": "relu"},
                    {"type": "Dense", "units": 3, "activation": "softmax"},
                ]
            },
            "compile": {"loss": "categorical_crossentropy"},
        },
    )
    run, _ = train(cli, config, tmp_path / "runs", "--quiet")
    data = splits(config)
    assert data.one_hot
    baselines = read(run, "metrics.json")["baselines"]
    assert baselines["majority"]["accuracy"] == pytest.approx(majority_share(data), **SHARE)
    assert_scores(baselines["majority"], class_scores(frequencies(data), data.test.y))
    assert list(baselines) == ["majority"]  # NPZ arrays are not a table


@pytest.mark.slow
def test_a_binary_sigmoid_run_scores_baselines_with_binary_crossentropy(cli, tmp_path):
    config = write(
        tmp_path,
        {
            "data": {"source": "breast_cancer"},
            "model": {
                "layers": [
                    {"type": "Dense", "units": 8, "activation": "relu"},
                    {"type": "Dense", "units": 1, "activation": "sigmoid"},
                ]
            },
            "compile": {"loss": "binary_crossentropy", "metrics": ["accuracy", "auc"]},
        },
    )
    run, _ = train(cli, config, tmp_path / "runs", "--quiet")
    metrics, data = read(run, "metrics.json"), splits(config)
    y = np.asarray(data.test.y)

    def binary(p1: np.ndarray) -> dict:
        p = np.clip(p1, EPS, 1 - EPS)
        return {
            "accuracy": float(((p1 > 0.5) == y).mean()),
            "loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
        }

    majority = metrics["baselines"]["majority"]
    assert set(majority) == {*metrics["test"], "fit_s"} == {"loss", "accuracy", "auc", "fit_s"}
    assert majority["accuracy"] == pytest.approx(majority_share(data), **SHARE)
    assert majority["auc"] == pytest.approx(0.5)  # one score for every sample
    expected = binary(frequencies(data)[:, 1])
    assert majority["loss"] == pytest.approx(expected["loss"], **LOSS)
    boosting = metrics["baselines"]["gradient_boosting"]
    expected = binary(boosted(data, 7)[:, 1])
    assert boosting["accuracy"] == pytest.approx(expected["accuracy"], **SHARE)
    assert boosting["loss"] == pytest.approx(expected["loss"], **LOSS)
    assert boosting["auc"] > 0.9


@pytest.mark.slow
def test_diabetes_regression_scores_the_training_mean_and_boosting_with_the_run_s_loss(
    cli, tmp_path
):
    config = write(
        tmp_path,
        {
            "data": {"source": "diabetes"},
            "model": {"layers": [{"type": "Dense", "units": 8}, {"type": "Dense", "units": 1}]},
            "compile": {"loss": "mse", "metrics": ["mae", "mse"]},
        },
    )
    run, _ = train(cli, config, tmp_path / "runs", "--quiet")
    metrics, data = read(run, "metrics.json"), splits(config)
    y = np.asarray(data.test.y, dtype="float64").reshape(-1)
    test = metrics["test"]
    assert set(test) == {"loss", "mae", "mse"}
    weight = test["loss"] / test["mse"]  # the loss as the run computes it, weighted or not

    def regression(predicted: np.ndarray) -> dict:
        mse = float(((predicted - y) ** 2).mean())
        return {"loss": weight * mse, "mae": float(abs(predicted - y).mean()), "mse": mse}

    mean = np.full(len(y), np.asarray(data.train.y, dtype="float64").mean())
    assert_scores(metrics["baselines"]["majority"], regression(mean))
    assert_scores(metrics["baselines"]["gradient_boosting"], regression(boosted(data, 7)))


# ---------------------------------------------------------------- tables


def write_table(path: Path, rows: int = 600) -> Path:
    """A CSV with a header: a number (some cells missing), a text category that decides most
    of the label (some cells missing), a whole number, and a text label."""
    rng = np.random.default_rng(1)
    lines = ["size,color,count,label"]
    for i in range(rows):
        size, color = rng.normal(10, 3), ["red", "green", "blue", "grey"][rng.integers(0, 4)]
        label = "yes" if (color in ("red", "blue")) != (size > 13) else "no"
        cells = ["?" if i % 17 == 0 else f"{size:.3f}", "?" if i % 23 == 0 else color]
        lines.append(",".join([*cells, str(int(rng.integers(0, 9))), label]))
    path.write_text("\n".join(lines) + "\n")
    return path


def table_changes(path: Path, **data) -> dict:
    return {
        "seed": 3,
        "data": {"source": "csv", "path": str(path), "target": "label", **data},
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "activation": "softmax"},
            ]
        },
        "compile": {"loss": "sparse_categorical_crossentropy"},
    }


@pytest.mark.slow
def test_a_csv_with_a_text_category_boosts_on_its_categories_natively(cli, tmp_path):
    config = write(tmp_path, table_changes(write_table(tmp_path / "table.csv")))
    run, _ = train(cli, config, tmp_path / "runs", "--quiet")
    data = splits(config)
    kinds = [f.type for f in data.preprocessing.features]
    assert kinds == ["numeric", "categorical", "numeric"]
    assert np.isnan(data.train.x[:, 0]).any(), "missing numbers reach the model as NaN"

    baselines = read(run, "metrics.json")["baselines"]
    assert baselines["majority"]["accuracy"] == pytest.approx(majority_share(data), **SHARE)
    expected = class_scores(boosted(data, 3, categorical=[1]), data.test.y)
    assert_scores(baselines["gradient_boosting"], expected)
    assert baselines["gradient_boosting"]["accuracy"] > 0.9  # the color decides the label


@pytest.mark.slow
def test_a_streamed_table_gets_the_majority_baseline_only(cli, tmp_path):
    table = write_table(tmp_path / "table.csv")
    config = write(tmp_path, table_changes(table, streaming=True))
    run, _ = train(cli, config, tmp_path / "runs", "--quiet")
    assert read(run, "run.json")["data"]["streaming"] is True
    data = splits(config)
    baselines = read(run, "metrics.json")["baselines"]
    assert list(baselines) == ["majority"]
    assert_scores(baselines["majority"], class_scores(frequencies(data), data.test.y))


# ---------------------------------------------------------------- choosing, and reading back


@pytest.mark.slow
def test_majority_and_none_and_the_commands_that_read_runs_back(cli, tmp_path):
    runs = tmp_path / "runs"
    majority, printed = train(cli, write(tmp_path, {"output": {"baselines": "majority"}}), runs)
    none, plain = train(
        cli, write(tmp_path, {"output": {"baselines": "none"}}, name="none.yaml"), runs
    )
    scores = read(majority, "metrics.json")["baselines"]
    assert list(scores) == ["majority"] and set(scores["majority"]) == {"loss", "accuracy", "fit_s"}
    assert "baseline" in printed.stderr and "gradient boosting" not in printed.stderr
    assert "baselines" not in read(none, "metrics.json")
    assert "baselines_s" not in read(none, "run.json")["timings"]
    assert "baseline" not in plain.stderr

    listed = json.loads(cli("runs", "--runs-dir", runs, "--json").stdout)["runs"]
    by_id = {row["id"]: row for row in listed}
    assert by_id[majority.name]["baselines"] == scores and by_id[none.name]["baselines"] == {}

    compared = cli("compare", majority, none, "--json")
    assert compared.exit_code == 0, compared.stderr
    rows = json.loads(compared.stdout)["baselines"]
    accuracy = scores["majority"]["accuracy"]
    assert {"baseline": "majority", "metric": "accuracy", "values": [accuracy, None]} in rows
    assert sorted(r["metric"] for r in rows) == ["accuracy", "loss"]
    table = cli("compare", majority, none).stdout
    assert any(
        "majority baseline accuracy" in line and f"{accuracy:.4f}" in line
        for line in table.splitlines()
    ), table

    shown = cli("show", majority, "--runs-dir", runs)
    assert shown.exit_code == 0, shown.stderr
    assert any(
        "majority baseline" in line and f"{accuracy:.4f}" in line
        for line in shown.stdout.splitlines()
    ), shown.stdout
    assert json.loads(cli("show", majority, "--json").stdout)["baselines"] == scores


def test_the_config_takes_auto_majority_or_none_and_nothing_else(cli, tmp_path):
    default = {key: value for key, value in TINY.items() if key != "output"}
    assert load_config(default).output.baselines == "auto"
    result = cli("validate", write(tmp_path, {"output": {"baselines": "boosting"}}))
    assert result.exit_code == 2
    assert "output.baselines" in result.stderr and "majority" in result.stderr
