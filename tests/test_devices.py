"""Several devices on one machine: `DLCLI_CPU_DEVICES=N` splits the CPU into N
logical devices on TensorFlow and JAX, so the multi-device path runs anywhere, CI included.

Each run is a fresh process: a backend reads the device split once, when it starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_dlcli

# No Dropout: its masks are drawn per replica, so only a model without it computes the
# same numbers on one device and on two. digits' splits are odd (1,149 training samples,
# last batch 61 of 64; 288 validation and 360 test samples in batches of 64).
SAME_MATH = {"training": {"epochs": 3, "batch_size": 64}}


def trained(config: Path, runs: Path, devices: int | None) -> tuple[dict, dict]:
    env = {"DLCLI_CPU_DEVICES": str(devices)} if devices else {}
    result = run_dlcli("train", config, "--runs-dir", runs, "--json", "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    return out, json.loads((Path(out["run"]) / "run.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, distribution", [("tensorflow", "mirrored"), ("jax", "data_parallel")]
)
def test_two_logical_devices_train_as_one_device_does(
    write_config, runs_dir, backend, distribution
):
    config = write_config({**SAME_MATH, "runtime": {"backend": backend}})
    one, one_record = trained(config, runs_dir, None)
    two, record = trained(config, runs_dir, 2)
    assert (
        one_record["runtime"]["distribution"] == "none" and one_record["runtime"]["replicas"] == 1
    )
    assert record["runtime"]["distribution"] == distribution  # auto picks it for two devices
    assert record["runtime"]["replicas"] == 2
    cpus = [d for d in record["devices"] if d["type"] == "CPU"]
    assert len(cpus) == 2 and len({d["id"] for d in cpus}) == 2
    for split in ("train", "val", "test"):
        assert two[split]["loss"] == pytest.approx(one[split]["loss"], rel=2e-3), split
        assert abs(two[split]["accuracy"] - one[split]["accuracy"]) <= 2 / 288, split


@pytest.mark.slow
def test_mirrored_refuses_several_steps_per_execution(write_config, runs_dir):
    config = write_config(
        {"runtime": {"backend": "tensorflow", "distribution": "mirrored", "steps_per_execution": 8}}
    )
    result = run_dlcli("validate", config, env={"DLCLI_CPU_DEVICES": "2"})
    assert result.returncode == 2, result.stderr
    assert "keras-team/keras#19246" in result.stderr and "set 1 or auto" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_device_count_that_is_no_number_is_refused(cli, write_config, monkeypatch):
    monkeypatch.setenv("DLCLI_CPU_DEVICES", "two")
    result = cli("validate", write_config())
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: DLCLI_CPU_DEVICES: must be a whole number from 1 to 256, got 'two'"
    )
