"""Data sources: keras.datasets through a patched fetch, NPZ files, one-hot labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS


def _fake_mnist(path: Path, n_train=600, n_test=100) -> Path:
    """An NPZ in mnist.npz's layout: digits upscaled to 28x28 uint8 (real, learnable images)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images, np.ones((4, 4)))[:, 2:30, 2:30]  # 8x8 -> 32x32 -> crop 28x28
    images = np.pad(images, ((0, 0), (0, 0), (0, 0)))[:, :28, :28]
    images = (images / 16 * 255).astype("uint8")
    np.savez(
        path,
        x_train=images[:n_train],
        y_train=digits.target[:n_train].astype("uint8"),
        x_test=images[n_train : n_train + n_test],
        y_test=digits.target[n_train : n_train + n_test].astype("uint8"),
    )
    return path


@pytest.fixture
def patched_mnist_fetch(monkeypatch, tmp_path):
    """keras.datasets.mnist loads its file through get_file: hand it a local file instead."""
    import keras.src.datasets.mnist as mnist_module

    fake = _fake_mnist(tmp_path / "mnist.npz")
    monkeypatch.setattr(mnist_module, "get_file", lambda *args, **kwargs: str(fake))
    return fake


@pytest.mark.slow
def test_mnist_mlp_config_trains_on_the_keras_loader(cli, runs_dir, patched_mnist_fetch):
    result = cli(
        "train",
        CONFIGS / "mnist_mlp.yaml",
        "--runs-dir",
        runs_dir,
        "--quiet",
        "--set",
        "training.epochs=2",
    )
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["input_shape"] == [28, 28]
    assert record["data"]["samples"] == {"train": 480, "val": 120, "test": 100}
    summary = (run / "summary.txt").read_text()
    assert "Flatten" in summary and "(None, 784)" in summary
    assert record["parameters"]["trainable"] == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] > 0.5


def test_mnist_offline_and_uncached_is_a_clear_exit_2(cli, runs_dir, monkeypatch):
    import keras.src.datasets.mnist as mnist_module

    def offline(*args, **kwargs):
        # Keras's get_file raises a plain Exception when the download fails.
        raise Exception(  # noqa: TRY002
            "URL fetch failure on https://example.invalid/mnist.npz: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(mnist_module, "get_file", offline)
    result = cli("train", CONFIGS / "mnist_mlp.yaml", "--runs-dir", runs_dir)
    assert result.exit_code == 2
    assert "mnist_mlp.yaml:" in result.stderr and "could not be downloaded" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.mark.slow
def test_npz_with_own_test_split_and_one_hot_labels(cli, write_config, runs_dir, tmp_path):
    from sklearn.datasets import load_iris

    iris = load_iris()
    order = np.random.default_rng(0).permutation(len(iris.target))
    x, y = iris.data[order].astype("float32"), np.eye(3, dtype="float32")[iris.target[order]]
    path = tmp_path / "iris.npz"
    np.savez(path, features=x[:120], onehot=y[:120], x_test=x[120:], y_test=y[120:])
    config = write_config(
        {
            "data": {
                "source": "npz",
                "path": "iris.npz",
                "keys": {"x_train": "features", "y_train": "onehot"},
            },
            "model": {
                "layers": [
                    {"type": "Dense", "units": 16, "activation": "relu"},
                    {"type": "Dense", "activation": "softmax"},
                ]
            },
            "compile": {
                "loss": "categorical_crossentropy",
                "optimizer": {"type": "adam", "learning_rate": 0.02},
            },
            "training": {"epochs": 30, "batch_size": 16},
        }
    )
    result = cli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["samples"]["test"] == 30
    assert list(record["data"]["files"]) == [str(path.resolve())]
    assert len(record["data"]["files"][str(path.resolve())]) == 64
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] > 0.8


@pytest.mark.slow
def test_integer_labels_are_one_hot_encoded_for_categorical_crossentropy(
    cli, write_config, runs_dir
):
    config = write_config({"compile": {"loss": "categorical_crossentropy"}})
    result = cli("train", config, "--runs-dir", runs_dir, "--quiet")
    assert result.exit_code == 0, result.stderr
    evaluation = cli("evaluate", result.stdout.strip(), "--json")
    assert evaluation.exit_code == 0, evaluation.stderr
    assert json.loads(evaluation.stdout)["metrics"]["accuracy"] > 0.5


@pytest.mark.slow
def test_same_seed_gives_the_same_split(cli, write_config, runs_dir):
    config = write_config({"training": {"epochs": 1}})
    fingerprints = set()
    for _ in range(2):
        result = cli("train", config, "--runs-dir", runs_dir, "--quiet")
        assert result.exit_code == 0, result.stderr
        fingerprints.add(
            json.loads((Path(result.stdout.strip()) / "run.json").read_text())["data"][
                "fingerprint"
            ]
        )
    assert len(fingerprints) == 1
    other = cli("train", config, "--runs-dir", runs_dir, "--quiet", "--set", "seed=8")
    assert (
        json.loads((Path(other.stdout.strip()) / "run.json").read_text())["data"]["fingerprint"]
        not in fingerprints
    )


@pytest.mark.slow
def test_cifar10_colour_images_with_column_labels(cli, runs_dir, monkeypatch):
    """keras.datasets.cifar10 gives (N, 32, 32, 3) uint8 images and (N, 1) labels."""
    import keras

    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 10, (300, 1)), rng.integers(0, 10, (60, 1))

    def images(labels):  # a learnable colour cue per class
        base = rng.integers(0, 60, (len(labels), 32, 32, 3))
        base[..., 0] += (labels[:, 0, None, None] * 20).astype(base.dtype)
        return base.astype("uint8")

    monkeypatch.setattr(
        keras.datasets.cifar10,
        "load_data",
        lambda: ((images(y_train), y_train), (images(y_test), y_test)),
    )
    config = {
        "data": {"source": "cifar10", "normalize": "standard"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 32, "activation": "relu"},
                {"type": "Dense", "activation": "softmax"},
            ]
        },
        "training": {"epochs": 3},
        "output": {"tensorboard": False, "plots": False},
    }
    path = runs_dir.parent / "cifar.yaml"
    runs_dir.parent.mkdir(parents=True, exist_ok=True)
    import yaml

    path.write_text(yaml.safe_dump(config))
    result = cli("train", path, "--runs-dir", runs_dir, "--quiet")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["input_shape"] == [32, 32, 3] and record["data"]["classes"] == 10
    summary = (run / "summary.txt").read_text()
    assert "(None, 3072)" in summary  # flattened for the Dense stack
    assert json.loads((run / "labels.json").read_text()) == list(range(10))
