"""Several processes, one run: `--coordinator/--num-processes/--process-id` on the
JAX backend, proven with real processes on 127.0.0.1 (JAX's CPU collectives).

Each test starts every process of the run as a user would, on its own free port; JAX's
peer timeout is cut to a few seconds so that a dead peer is noticed quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import run_dlcli

FAST = {"DLCLI_PEER_TIMEOUT": "8", "DLCLI_START_TIMEOUT": "20", "NO_COLOR": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(
    config, runs: Path, index: int, count: int, port: int, *extra, env=None
) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "dlcli",
        "train",
        *([str(config)] if config else []),
        "--runs-dir",
        str(runs),
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        str(count),
        "--process-id",
        str(index),
        *extra,
    ]
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **FAST, **(env or {})},
        start_new_session=True,
    )


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results


def epoch_lines(stderr: str) -> list[str]:
    """The per-epoch progress lines, less their timing."""
    return [line.rsplit("  ", 1)[0] for line in stderr.splitlines() if line.startswith("epoch ")]


@pytest.fixture
def jax_config(write_config):
    return write_config(
        {"runtime": {"backend": "jax"}, "training": {"epochs": 3, "batch_size": 32}}
    )


@pytest.mark.slow
def test_two_processes_train_one_run_that_only_process_0_writes(jax_config, runs_dir):
    port = free_port()
    scratch = set(Path(tempfile.gettempdir()).glob("dlcli-*"))
    procs = [start(jax_config, runs_dir, i, 2, port, "--json") for i in range(2)]
    (code0, out0, err0), (code1, out1, err1) = finish(procs)
    assert (code0, code1) == (0, 0), err0 + err1
    result = json.loads(out0)  # exactly one JSON object: Gloo's chatter is kept off stdout
    assert out1 == ""  # the follower prints its progress on stderr only
    assert "process 1 of 2: done" in err1
    # All processes compute the same metrics, epoch by epoch.
    assert epoch_lines(err0) == epoch_lines(err1) and len(epoch_lines(err0)) == 3
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert [p.name for p in runs] == [Path(result["run"]).name]  # one run folder, process 0's
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["processes"]["count"] == 2
    devices = record["processes"]["devices"]
    assert set(devices) == {"0", "1"} and all(len(ids) == 1 for ids in devices.values())
    assert (
        record["runtime"]["distribution"] == "data_parallel" and record["runtime"]["replicas"] == 2
    )
    assert record["runtime"]["process_batch_size"] == 16
    # digits: 1,149 training samples, 574 per process (one left out to share evenly)
    assert record["runtime"]["samples_per_process"]["train"] == 574
    assert (
        set(Path(tempfile.gettempdir()).glob("dlcli-*")) <= scratch
    )  # the follower's copy is gone
    history = (runs[0] / "history.csv").read_text().splitlines()
    assert len(history) == 4
    # The model process 0 saved is an ordinary one: evaluate scores it alone.
    scored = run_dlcli("evaluate", runs[0], "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["metrics"]["accuracy"] == pytest.approx(
        result["test"]["accuracy"], abs=1e-6
    )
    assert result["test"]["accuracy"] > 0.8


@pytest.mark.slow
def test_a_dead_peer_fails_the_run_in_one_line_and_resume_finishes_it(write_config, runs_dir):
    config = write_config(
        {"runtime": {"backend": "jax"}, "training": {"epochs": 400, "batch_size": 32}}
    )
    port = free_port()
    procs = [start(config, runs_dir, i, 2, port) for i in range(2)]
    deadline = time.time() + 180
    history = None
    while time.time() < deadline:  # wait until process 0 has checkpointed two epochs
        found = list(runs_dir.glob("*/checkpoints/state.json"))
        with contextlib.suppress(OSError, ValueError):
            if found and json.loads(found[0].read_text())["epoch"] >= 2:
                history = found[0].parent.parent / "history.csv"
                break
        time.sleep(0.2)
    assert history is not None, "no epoch was written"
    os.killpg(procs[1].pid, signal.SIGKILL)  # process 1 and its worker die at once
    code, out, err = finish(procs[:1], timeout=120)[0]
    procs[1].wait()
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "peer process died" in errors[0], err
    assert "Traceback" not in err and "Check failure" not in err
    assert out == ""
    run = history.parent
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "peer process died" in record["error"]
    # The resume continues from the last checkpoint: the epoch the peer died in may be in
    # history.csv already while its checkpoint (a collective save) never completed.
    kept = json.loads((run / "checkpoints" / "state.json").read_text())["epoch"]
    assert kept >= 2 and len(history.read_text().splitlines()) - 1 in (kept, kept + 1)

    # Both processes resume it: the followers get the leader's folder over the runtime.
    port = free_port()
    procs = [
        start(
            None, runs_dir, i, 2, port, "--resume", str(run), "--set", f"training.epochs={kept + 2}"
        )
        for i in range(2)
    ]
    (code0, out0, err0), (code1, _, err1) = finish(procs)
    assert (code0, code1) == (0, 0), err0 + err1
    assert out0.strip() == str(run)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["resumes"][-1]["from_epoch"] == kept
    rows = (run / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, kept + 3))
    assert epoch_lines(err0) == epoch_lines(err1) and len(epoch_lines(err0)) == 2


@pytest.mark.slow
def test_a_process_alone_waits_for_its_peers_then_says_how_to_start_them(jax_config, runs_dir):
    port = free_port()
    code, _, err = finish(
        [start(jax_config, runs_dir, 1, 2, port, env={"DLCLI_START_TIMEOUT": "3"})]
    )[0]
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: process 1 could not join the run at 127.0.0.1:{port} within 3 s; "
        "start all 2 processes (--process-id 0 to 1) with the same --coordinator, process 0 on that host"
    )
    assert not runs_dir.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1234"],
            "error: --process-id: must be 0 to 1 (0 on the coordinator's host), got 2",
        ),
        (
            ["--num-processes", "2", "--process-id", "0", "--coordinator", "127.0.0.1"],
            "error: --coordinator: must be HOST:PORT, the address of process 0 (e.g. 10.0.0.1:29500), got '127.0.0.1'",
        ),
        (
            ["--num-processes", "2", "--coordinator", "127.0.0.1:1234"],
            "error: --process-id: must be 0 to 1 (0 on the coordinator's host), got missing",
        ),
    ],
)
def test_process_options_are_checked_before_anything_starts(
    cli, write_config, runs_dir, args, message
):
    result = cli("train", write_config(), "--runs-dir", runs_dir, *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert not runs_dir.exists()


def test_the_environment_variables_set_the_same_options(cli, write_config, runs_dir, monkeypatch):
    monkeypatch.setenv("DLCLI_NUM_PROCESSES", "3")
    monkeypatch.setenv("DLCLI_PROCESS_ID", "3")
    monkeypatch.setenv("DLCLI_COORDINATOR", "127.0.0.1:1234")
    result = cli("train", write_config(), "--runs-dir", runs_dir)
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "error: --process-id: must be 0 to 2 (0 on the coordinator's host), got 3"
    )


@pytest.mark.slow
def test_several_processes_need_the_jax_backend(write_config, runs_dir):
    config = write_config({"runtime": {"backend": "tensorflow"}})
    result = run_dlcli(
        "train",
        config,
        "--runs-dir",
        runs_dir,
        "--coordinator",
        f"127.0.0.1:{free_port()}",
        "--num-processes",
        "2",
        "--process-id",
        "0",
        env=FAST,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {config}:")
    assert (
        "runtime.backend: 2 processes (--num-processes) train on runtime.backend: jax, got tensorflow"
        in lines[0]
    )
    assert "keras-team/keras#20585" in lines[0]
    assert not runs_dir.exists()


def test_batch_size_is_split_evenly_over_the_processes():
    from dlcli.config.load import load_config
    from dlcli.errors import ConfigError
    from dlcli.training.distributed import Group, check_batch

    config = load_config(
        {
            "data": {"source": "digits"},
            "model": {"layers": [{"type": "Dense", "units": 10}]},
            "training": {"batch_size": 30},
        }
    )
    assert check_batch(config, Group("h:1", 2, 0), 1) == 15
    with pytest.raises(
        ConfigError,
        match=r"30 cannot be split evenly over 4 processes x 2 devices; set a multiple of 8 \(e\.g\. 32\)",
    ):
        check_batch(config, Group("h:1", 4, 1), 2)
