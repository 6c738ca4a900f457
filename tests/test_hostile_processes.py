"""Hostile conditions around the processes dlcli starts and waits on: a study database
another process keeps locked, a sweep.json that is not an object, internal hand-off
variables set by mistake in a user's shell, a coordinator port already taken, and the
processes of one run given different configs. Each is one line and its exit code, through
the real `dlcli` command.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS, run_dlcli
from test_processes import FAST, free_port, start
from test_sweep import REGRESSION

from dlcli.tuning.sqlite_lock import WAIT_S

STOP_AND_WAIT = (
    180  # a trial or two, then the wait for the lock and the stop of the trial in flight
)
SWEEP = {
    "trials": 3,
    "pruner": "none",
    "space": {"compile.optimizer.learning_rate": {"log_uniform": [3.0e-4, 3.0e-3]}},
}


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def wait_for(predicate, timeout: float = 180, what: str = ""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def sweep_record(folder: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((folder / "sweep.json").read_text())
    return {}


@contextlib.contextmanager
def locked(database: Path):
    """Another process holding an exclusive lock on a SQLite file until the block ends."""
    code = (
        "import sqlite3, sys; con = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "con.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


# -- 1. a study database another process keeps locked ------------------------------------------


@pytest.mark.slow
def test_a_study_locked_mid_sweep_or_at_resume_is_one_line_after_a_bounded_wait_and_resumes(
    tmp_path,
):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**REGRESSION, "sweep": SWEEP}, sort_keys=False))
    runs = tmp_path / "runs"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "sweep", str(config), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        folder = wait_for(
            lambda: next(runs.glob("reg-sweep-*"), None) if runs.is_dir() else None,
            what="the folder",
        )
        wait_for(
            lambda: sweep_record(folder).get("counts", {}).get("completed"),
            what="a completed trial",
        )
        database = folder / "study.db"
        advice = f"; wait for it to finish or stop it, then run: dlcli sweep --resume {folder}"
        with locked(database) as holder:
            said = f"error: {database}: the database is locked by pid {holder.pid} ("
            # Mid-sweep: the trial in flight is stopped, the sweep says why and exits 1.
            _, err = sweep.communicate(timeout=STOP_AND_WAIT)
            assert sweep.returncode == 1, err
            assert "Traceback" not in err
            assert errors(err) == [err.strip().splitlines()[-1]] and errors(err)[0].startswith(
                said
            ), err
            assert errors(err)[0].endswith(advice)
            assert sweep_record(folder)["status"] == "interrupted"
            # At a resume: before any trial, exit 2, after about WAIT_S.
            began = time.time()
            resumed = run_dlcli("sweep", "--resume", folder, timeout=120)
            assert resumed.returncode == 2, resumed.stderr
            assert WAIT_S - 1 < time.time() - began < WAIT_S + 30
            assert resumed.stderr.startswith(said) and resumed.stderr.strip().endswith(advice)
            assert len(resumed.stderr.strip().splitlines()) == 1, resumed.stderr
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    # Once the lock is gone, the sweep carries on to its 3 trials; the stopped one is kept as interrupted.
    done = run_dlcli("sweep", "--resume", folder, "--json")
    assert done.returncode == 0, done.stderr
    record = sweep_record(folder)
    assert record["status"] == "completed" and record["counts"].get("completed") == 3, record[
        "counts"
    ]


@pytest.mark.slow
def test_a_new_sweep_on_a_locked_storage_names_the_holder_and_exits_2(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**REGRESSION, "sweep": SWEEP}, sort_keys=False))
    database = tmp_path / "shared.db"
    with locked(database) as holder:
        began = time.time()
        result = run_dlcli(
            "sweep",
            config,
            "--runs-dir",
            tmp_path / "runs",
            "--storage",
            f"sqlite:///{database}",
            timeout=120,
        )
        took = time.time() - began
    assert result.returncode == 2, result.stderr
    assert took < WAIT_S + 30
    (folder,) = (tmp_path / "runs").iterdir()  # the new sweep's folder: what --resume carries on
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(
        f"error: {database}: the database is locked by pid {holder.pid} (python"
    )
    assert result.stderr.endswith(
        f"); wait for it to finish or stop it, then run: dlcli sweep --resume {folder}\n"
    )
    assert sweep_record(folder)["status"] == "interrupted"


# -- 2. sweep.json that is not an object ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("content", "kind"), [("[1, 2]", "list"), ("3", "int"), ('"text"', "str")])
def test_a_sweep_json_that_is_not_an_object_is_named_at_resume_and_listed_elsewhere(
    tmp_path, content, kind
):
    runs = tmp_path / "runs"
    folder = runs / "reg-sweep-20250101-000000"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump({**REGRESSION, "sweep": SWEEP}, sort_keys=False)
    )
    (folder / "sweep.json").write_text(content + "\n")
    resumed = run_dlcli("sweep", "--resume", folder)
    assert resumed.returncode == 2, resumed.stderr
    assert resumed.stderr == (
        f"error: {folder / 'sweep.json'}: is damaged (a JSON {kind}, not an object), so the "
        "sweep cannot be continued; restore it, or start a new sweep\n"
    )
    for args in (
        ["show", folder],
        ["show", folder, "--json"],
        ["runs", "--runs-dir", runs],
        ["runs", "--runs-dir", runs, "--json"],
    ):
        shown = run_dlcli(*args)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, (args, shown.stderr)
    listed = json.loads(run_dlcli("runs", "--runs-dir", runs, "--json").stdout)["runs"]
    assert [(r["id"], r["status"]) for r in listed] == [(folder.name, "incomplete")]


# -- 3. internal hand-off variables set by mistake --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "variable", ["DLCLI_PRELOAD", "DLCLI_RUN_NOTE", "DLCLI_PARENT_PID", "DLCLI_WORKER"]
)
def test_a_stray_internal_variable_changes_nothing(tmp_path, write_config, variable):
    note = tmp_path / "somefile"
    value = {
        "DLCLI_PRELOAD": "jax:0",
        "DLCLI_RUN_NOTE": str(note),
        "DLCLI_PARENT_PID": "1",
        "DLCLI_WORKER": "1",
    }[variable]

    def dlcli(*args):
        # stdin open and empty: a process that waits on it would take it as no trial and end quietly
        return subprocess.run(
            [sys.executable, "-m", "dlcli", *map(str, args)],
            input="",
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "NO_COLOR": "1", variable: value},
        )

    helped = dlcli("--help")
    assert helped.returncode == 0 and "Usage" in helped.stdout, helped.stderr
    valid = dlcli("validate", CONFIGS / "digits_mlp.yaml")
    assert valid.returncode == 0 and "is valid" in valid.stdout, valid.stderr
    trained = dlcli(
        "train",
        write_config({"training": {"epochs": 1}}),
        "--runs-dir",
        tmp_path / "runs",
        "--json",
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["status"] == "completed"
    assert not note.exists()


@pytest.mark.slow
def test_a_stray_worker_variable_does_not_skip_a_run_s_supervision(tmp_path, write_config):
    port = free_port()
    config = write_config({"runtime": {"backend": "jax"}})
    result = run_dlcli(
        "train",
        config,
        "--runs-dir",
        tmp_path / "runs",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
        "--process-id",
        "1",
        env={**FAST, "DLCLI_START_TIMEOUT": "3", "DLCLI_WORKER": "1"},
    )
    assert result.returncode == 1, result.stderr
    assert "Check failure" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: process 1 could not join the run at 127.0.0.1:{port} within 3 s; "
        "start all 2 processes (--process-id 0 to 1) with the same --coordinator, process 0 on that host"
    )


# -- 4. several processes: a taken port, different configs ------------------------------------------


def finish(procs: list[subprocess.Popen], timeout: float = 180) -> list[tuple[int, str, str]]:
    try:
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
        return results
    finally:
        for proc in procs:  # a run that hangs is ended with its worker
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.slow
def test_a_coordinator_port_taken_by_another_program_is_named_by_process_0(tmp_path, write_config):
    config = write_config({"runtime": {"backend": "jax"}})
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        began = time.time()
        ((code, out, err),) = finish([start(config, tmp_path / "runs", 0, 2, port)], timeout=60)
    assert code == 2, err
    assert err == (
        f"error: --coordinator 127.0.0.1:{port}: the port is already in use on this host (another "
        "program, or an earlier run still ending); choose a free port\n"
    )
    assert out == "" and time.time() - began < 20  # not the 20 s start timeout
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "sections"),
    [
        (["--set", "training.epochs=3"], "training"),
        (
            ["--set", "training.batch_size=32", "--set", "model.layers.0.units=16"],
            "model and training",
        ),
    ],
)
def test_processes_of_one_run_with_different_configs_stop_in_one_line(
    tmp_path, write_config, extra, sections
):
    config = write_config({"runtime": {"backend": "jax"}, "training": {"epochs": 2}})
    port = free_port()
    procs = [
        start(config, tmp_path / "runs", i, 2, port, *(extra if i == 1 else [])) for i in range(2)
    ]
    results = finish(procs)
    for code, _, err in results:
        assert code == 2, err
        assert "Traceback" not in err and "SIGABRT" not in err
        said = (
            f"error: process 1's config differs from process 0's in {sections}: start every process with the "
            "same config and --set options"
        )
        assert errors(err) == [said], err
    assert not (tmp_path / "runs").exists()
