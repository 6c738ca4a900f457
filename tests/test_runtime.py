"""Backends and runtime settings through the real CLI: settings a backend cannot honour are
exit 2 before anything runs, determinism is switched on for each backend, the JAX backend
trains with a clean stderr, and run.json's duration counts the data loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_dlcli, run_python

TF_START_UP = (
    "All log messages before absl::InitializeLog",
    "oneDNN custom operations",
    "cudart_stub",
    "cpu_feature_guard",
)


@pytest.mark.parametrize(
    ("runtime", "key", "words"),
    [
        (
            {"backend": "torch", "steps_per_execution": 4},
            "steps_per_execution",
            "one step per execution",
        ),
        (
            {"backend": "torch", "distribution": "data_parallel"},
            "distribution",
            "runs on runtime.backend: jax",
        ),
        (
            {"backend": "jax", "distribution": "mirrored"},
            "distribution",
            "use distribution: data_parallel",
        ),
    ],
)
@pytest.mark.parametrize("verb", ["validate", "train"])
def test_a_setting_the_backend_cannot_honour_is_exit_2_at_its_line(
    cli, write_config, runs_dir, runtime, key, words, verb
):
    config = write_config({"runtime": runtime})
    args = [verb, config] + (["--runs-dir", runs_dir] if verb == "train" else [])
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    line = next(
        i
        for i, text in enumerate(config.read_text().splitlines(), start=1)
        if text.strip().startswith(f"{key}:")
    )
    assert f"{config}:{line}: runtime.{key}: " in result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), "no run folder for a config error"


@pytest.mark.slow
def test_run_json_duration_counts_the_data_loading(cli, write_config, runs_dir):
    result = cli("train", write_config(), "--runs-dir", runs_dir, "--quiet")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    record = json.loads((run / "run.json").read_text())
    timings = record["timings"]
    assert timings["load_s"] > 0 and timings["build_s"] > 0
    epochs = sum(
        float(line.split(",")[-1]) for line in (run / "history.csv").read_text().splitlines()[1:]
    )
    assert record["duration_s"] >= timings["load_s"] + timings["build_s"] + epochs
    assert record["metric_directions"] == {"loss": "min", "accuracy": "max"}


@pytest.mark.slow
def test_determinism_switches_are_set_before_jax_starts():
    code = (
        "import os; from dlcli.runtime.keras_import import import_keras; from dlcli.runtime.choices import make_deterministic\n"
        "keras = import_keras('jax', deterministic=True)\n"
        "import jax; jax.devices(); make_deterministic('jax')\n"
        "print(keras.backend.backend(), os.environ['XLA_FLAGS'])\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["jax", "--xla_gpu_deterministic_ops=true"]


@pytest.mark.slow
def test_jax_backend_trains_without_tensorflow_start_up_lines(tmp_path, write_config):
    config = write_config(
        {"runtime": {"backend": "jax", "deterministic": True}, "output": {"tensorboard": True}}
    )
    result = run_dlcli("train", config, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    noise = [
        line for line in result.stderr.splitlines() if any(word in line for word in TF_START_UP)
    ]
    assert noise == [], noise
    record = json.loads((Path(result.stdout.strip()) / "run.json").read_text())
    assert record["versions"]["backend"] == "jax" and record["runtime"]["deterministic"] is True
    assert len([line for line in result.stderr.splitlines() if line.startswith("epoch ")]) == 3


@pytest.mark.slow
def test_callbacks_are_checked_on_the_configured_backend(write_config):
    """Checking a callback's name used to start Keras on TensorFlow before the config's
    backend was chosen, so a jax config with callbacks could not run at all."""
    config = write_config(
        {
            "runtime": {"backend": "jax"},
            "training": {"callbacks": [{"type": "CSVLogger", "filename": "log.csv"}]},
        }
    )
    result = run_dlcli("validate", config, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["runtime"]["backend"] == "jax"


@pytest.mark.slow
def test_jax_takes_gpu_memory_as_it_needs_it_unless_told_otherwise():
    code = (
        "import os; from dlcli.runtime.keras_import import import_keras\n"
        "import_keras('jax')\n"
        "print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])\n"
    )
    assert run_python(code).stdout.split() == ["false"]
    told = run_python(code, env={"XLA_PYTHON_CLIENT_PREALLOCATE": "true"})
    assert told.stdout.split() == ["true"]  # the user's own setting stands
