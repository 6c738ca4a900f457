"""Run-time failures: one clear line, exit 1, and a run folder that says `failed`."""

from __future__ import annotations

import errno
import json

import pytest

import dlcli.runs.runfolder


def _only_run(runs_dir):
    [run] = [p for p in runs_dir.iterdir() if not p.name.startswith(".")]
    return run, json.loads((run / "run.json").read_text())


@pytest.mark.slow  # imports TensorFlow for its error class: seconds
def test_out_of_memory_is_one_line_and_a_failed_run(cli, write_config, runs_dir, monkeypatch):
    import keras
    import tensorflow as tf

    def out_of_memory(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "OOM when allocating tensor with shape[1000000,1000000]"
        )

    monkeypatch.setattr(keras.Model, "fit", out_of_memory)
    result = cli("train", write_config(), "--runs-dir", runs_dir)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: out of memory") and "training.batch_size" in line
    _, record = _only_run(runs_dir)
    assert record["status"] == "failed" and record["error"].startswith("out of memory")


@pytest.mark.slow  # trains until its first epoch ends
def test_disk_full_while_training_is_one_line_and_a_failed_run(
    cli, write_config, runs_dir, monkeypatch
):
    def disk_full(path, line):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(dlcli.runs.runfolder, "append_line", disk_full)
    result = cli("train", write_config(), "--runs-dir", runs_dir)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert (
        "No space left on device" in line
        and "history.csv" in line
        and "Traceback" not in result.stderr
    )
    _, record = _only_run(runs_dir)
    assert record["status"] == "failed" and "No space left" in record["error"]


def test_a_runs_dir_that_cannot_be_created_is_a_usage_error(cli, write_config):
    result = cli("train", write_config(), "--runs-dir", "/proc/dlcli-cannot-write-here")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "/proc/dlcli-cannot-write-here" in line and "--runs-dir" in line
