"""`runtime.backend: auto` and runs that move between backends, through the real CLI.

The choice and its reason are in run.json while config.yaml keeps `auto`; KERAS_BACKEND
decides `auto` when set; a JAX run (TensorBoard and plots on, then evaluate) never imports
TensorFlow; a second run of a config compiles nothing (JAX's persistent cache); a run
trained on one backend is evaluated, predicted and resumed on another.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_dlcli, run_python
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.runtime.backend import AUTO_RULE, choose_backend, installed_backends

TWO = [b for b in ("jax", "tensorflow") if b in installed_backends()]
needs_two = pytest.mark.skipif(
    len(TWO) < 2, reason="needs both jax and tensorflow installed (the [test] extra has them)"
)


def _record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _train(config: Path, tmp_path: Path, *extra, env=None) -> Path:
    result = run_dlcli(
        "train", config, "--runs-dir", tmp_path / "runs", "--quiet", *extra, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


class Runtime:
    def __init__(self, backend="auto", distribution="auto"):
        self.backend, self.distribution = backend, distribution


def test_the_rule_picks_an_installed_backend_and_says_why(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    backend, why = choose_backend(Runtime(), ["Dense", "Dense"])
    first = next(
        b for b, families, _ in AUTO_RULE if families is None and b in installed_backends()
    )
    assert backend == first and why
    assert choose_backend(Runtime("torch"), ["Dense"]) == ("torch", "set in the config")
    assert choose_backend(Runtime(distribution="mirrored"), ["Dense"])[0] == "tensorflow"
    assert choose_backend(Runtime(), ["Dense"], processes=2)[0] == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert choose_backend(Runtime(), ["Dense"]) == ("torch", "KERAS_BACKEND is set")
    assert choose_backend(Runtime("jax"), ["Dense"])[0] == "jax"  # the config's own choice wins


@pytest.mark.slow
def test_auto_is_recorded_with_its_reason_and_config_yaml_keeps_auto(tmp_path, write_config):
    run = _train(write_config(), tmp_path, env={"KERAS_BACKEND": ""})
    record = _record(run)
    runtime = record["runtime"]
    assert runtime["backend_requested"] == "auto"
    assert (
        runtime["backend"]
        == record["versions"]["backend"]
        == choose_backend(Runtime(), ["Dense"])[0]
    )
    assert runtime["backend_reason"] and "config" not in runtime["backend_reason"]
    assert yaml.safe_load((run / "config.yaml").read_text())["runtime"]["backend"] == "auto"


@pytest.mark.slow
def test_keras_backend_decides_auto(tmp_path, write_config):
    run = _train(write_config(), tmp_path, env={"KERAS_BACKEND": "tensorflow"})
    runtime = _record(run)["runtime"]
    assert (runtime["backend"], runtime["backend_reason"]) == ("tensorflow", "KERAS_BACKEND is set")


@pytest.mark.slow
@pytest.mark.skipif("jax" not in installed_backends(), reason="jax is part of the [test] extra")
def test_a_jax_run_with_tensorboard_and_plots_never_imports_tensorflow(tmp_path, write_config):
    config = write_config(
        {"runtime": {"backend": "jax"}, "output": {"tensorboard": True, "plots": True}}
    )
    code = (
        "import sys\n"
        "from dlcli.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"r = CliRunner().invoke(app, ['train', {str(config)!r}, '--runs-dir', {str(tmp_path / 'runs')!r}, '--quiet'])\n"
        "assert r.exit_code == 0, r.output\n"
        "run = r.stdout.strip().splitlines()[-1]\n"
        "e = CliRunner().invoke(app, ['evaluate', run, '--json'])\n"
        "assert e.exit_code == 0, e.output\n"
        "print(run); print('tensorflow' in sys.modules)\n"
        # Then TensorBoard's own reader (which imports TensorFlow) reads the scalars.
        "import json\n"
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
        "read = {}\n"
        "for split in ('train', 'validation'):\n"
        "    events = EventAccumulator(run + '/tensorboard/' + split).Reload()\n"
        "    read[split] = {tag: [(e.step, e.tensor_proto.float_val[0]) for e in events.Tensors(tag)]\n"
        "                   for tag in events.Tags()['tensors']}\n"
        "print(json.dumps(read))\n"
    )
    out = run_python(code, env={"KERAS_BACKEND": ""}, timeout=300)
    assert out.returncode == 0, out.stderr
    run, loaded, read = out.stdout.strip().splitlines()[-3:]
    assert loaded == "False"
    read = json.loads(read)
    rows = list(csv.DictReader(io.StringIO((Path(run) / "history.csv").read_text())))
    for split, key in (("train", "loss"), ("validation", "val_loss")):
        steps, values = zip(*read[split]["epoch_loss"], strict=True)
        assert list(steps) == [0, 1, 2], split
        assert list(values) == pytest.approx([float(r[key]) for r in rows], rel=1e-5)
    assert set(read["train"]) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}
    assert set(read["validation"]) == {"epoch_loss", "epoch_accuracy"}


@pytest.mark.slow
@pytest.mark.skipif("jax" not in installed_backends(), reason="jax is part of the [test] extra")
def test_a_second_run_of_a_config_compiles_nothing(tmp_path, write_config):
    config = write_config({"runtime": {"backend": "jax"}})
    env = {"DLCLI_COMPILE_CACHE": str(tmp_path / "cache")}
    first = _record(_train(config, tmp_path, env=env))["compile_cache"]
    second = _record(_train(config, tmp_path, env=env))["compile_cache"]
    assert first["dir"] == second["dir"] == str(tmp_path / "cache")
    assert first["writes"] > 0
    assert second["writes"] == 0 and second["hits"] >= first["writes"]
    off = _record(_train(config, tmp_path, env={"DLCLI_COMPILE_CACHE": "off"}))
    assert "compile_cache" not in off


@pytest.mark.slow
@needs_two
@pytest.mark.parametrize(("trained", "other"), [("jax", "tensorflow"), ("tensorflow", "jax")])
def test_a_run_is_evaluated_predicted_and_resumed_on_another_backend(
    tmp_path, write_config, trained, other
):
    config = write_config({"training": {"epochs": 2}})
    run = _train(config, tmp_path, "--set", f"runtime.backend={trained}")
    assert _record(run)["runtime"]["backend"] == trained
    test = json.loads((run / "metrics.json").read_text())["test"]

    def dlcli_on(backend: str, *args) -> tuple[int, str, str]:
        """dlcli with --backend: JAX's in this process (the suite's in-process Keras is on
        JAX), TensorFlow's in a subprocess."""
        if backend == "jax":
            result = CliRunner().invoke(app, [*map(str, args), "--backend", backend])
            return result.exit_code, result.stdout, result.stderr
        result = run_dlcli(*args, "--backend", backend)
        return result.returncode, result.stdout, result.stderr

    entries = {}
    for backend in (trained, other):
        code, stdout, stderr = dlcli_on(backend, "evaluate", run, "--json")
        assert code == 0, stderr
        entries[backend] = json.loads(stdout)
        assert entries[backend]["backend"] == backend
        assert entries[backend]["metrics"]["accuracy"] == pytest.approx(test["accuracy"], abs=1e-6)
    # The same backend gives the same loss; across backends Keras computes cross-entropy
    # differently (TensorFlow from the softmax's logits, the others from probabilities
    # clipped at 1e-7), so only a confidently wrong sample's share may differ.
    assert entries[trained]["metrics"]["loss"] == pytest.approx(test["loss"], rel=1e-5)
    assert entries[other]["metrics"]["loss"] == pytest.approx(test["loss"], rel=0.2)

    features = tmp_path / "features.npz"
    import numpy as np
    from sklearn.datasets import load_digits

    np.savez(features, x=load_digits().data[:50].astype("float32"))
    predictions = {}
    for backend in (trained, other):
        code, stdout, stderr = dlcli_on(backend, "predict", run, features, "--proba")
        assert code == 0, stderr
        predictions[backend] = list(csv.DictReader(io.StringIO(stdout)))
    assert [r["prediction"] for r in predictions[trained]] == [
        r["prediction"] for r in predictions[other]
    ]
    for a, b in zip(predictions[trained], predictions[other], strict=True):
        assert float(a["proba_0"]) == pytest.approx(float(b["proba_0"]), abs=1e-5)

    resumed = run_dlcli(
        "train",
        "--resume",
        run,
        "--set",
        "training.epochs=4",
        "--set",
        f"runtime.backend={other}",
        "--quiet",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    record = _record(run)
    assert record["status"] == "completed" and record["runtime"]["backend"] == other
    assert record["resumes"][-1]["backend"] == other and record["resumes"][-1]["from_epoch"] == 2
    rows = list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[3]["loss"]) < float(rows[1]["loss"])  # it trained on from where it was


def test_an_unknown_backend_option_is_one_line_exit_2(cli, trained_run):
    result = cli("evaluate", trained_run, "--backend", "tensorflw")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --backend: expected one of auto, tensorflow, jax, torch, got 'tensorflw' (did you mean 'tensorflow'?)"
    ]


def test_env_says_which_backend_auto_picks(cli):
    result = cli("env", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["backend_reason"] and set(info["backends_installed"]) <= {
        "tensorflow",
        "jax",
        "torch",
    }
    assert info["backend"] in info["backends_installed"]


def test_python_api_names_the_backend_in_evaluations(trained_run):
    lines = (
        (trained_run / "evaluations.jsonl").read_text().splitlines()
        if (trained_run / "evaluations.jsonl").exists()
        else []
    )
    import dlcli

    entry = dlcli.evaluate(trained_run)
    assert entry["backend"] == sys.modules["keras"].backend.backend()
    assert len((trained_run / "evaluations.jsonl").read_text().splitlines()) == len(lines) + 1


def test_convolutions_train_on_tensorflow_when_both_are_installed(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    installed = installed_backends()
    for layers in (
        ["Conv2D", "MaxPooling2D", "Flatten", "Dense"],
        ["SeparableConv1D", "Dense"],
        ["ConvLSTM2D"],
    ):
        backend, _ = choose_backend(Runtime(), layers)
        assert backend == ("tensorflow" if "tensorflow" in installed else "jax"), layers
    if {"tensorflow", "jax"} <= set(installed):
        assert "convolution" in choose_backend(Runtime(), ["Conv2D"])[1]
        assert choose_backend(Runtime(), ["LSTM", "Dense"])[0] == "jax"
        assert (
            choose_backend(Runtime(), ["Embedding", "GlobalAveragePooling1D", "Dense"])[0] == "jax"
        )
