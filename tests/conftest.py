"""Shared fixtures: run the real CLI in-process (Typer's runner) or as a subprocess.

In-process runs share one Keras import, which keeps the suite fast; subprocess runs prove
the installed `dlcli` command, exit codes and stream separation end to end.

`pytest -m "not slow"` is the fast loop: a test that starts a process or trains for more than
a second carries `@pytest.mark.slow`, and every test that uses the session's trained run
(`trained_run`, `run_copy`) is marked slow here, since whichever of them runs first trains it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
# The shipped census-like table (benchmarks/make_census.py): no header, ', ' separators, '?' cells.
CENSUS = CONFIGS / "data" / "census.csv"
CENSUS_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "sex",
    "hours_per_week",
    "native_country",
    "income",
]
# ... read as its form says (the config `dlcli init --from-data` would write), 20% val, 20% test.
CENSUS_DATA = {
    "source": "csv",
    "path": str(CENSUS),
    "header": False,
    "columns": CENSUS_COLUMNS,
    "target": "income",
    "missing": ["?"],
    "validation_split": 0.2,
    "test_split": 0.2,
}

# A small but real digits MLP: trains in a couple of seconds on 2 cores.
TINY = {
    "name": "tiny",
    "seed": 7,
    "data": {"source": "digits", "validation_split": 0.2, "test_split": 0.2},
    "model": {
        "layers": [
            {"type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    },
    "compile": {
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "training": {"epochs": 3, "batch_size": 64},
    # No extras a test does not look at: TensorBoard files, pictures, baselines.
    "output": {"tensorboard": False, "plots": False, "baselines": "none"},
}


# A regression whose loss becomes NaN/inf in its first epoch (SGD at a learning rate of 1e6).
DIVERGING = {
    "data": {"source": "diabetes"},
    "model": {
        "layers": [
            {"type": "Dense", "units": 16, "activation": "relu"},
            {"type": "Dense", "units": 1},
        ]
    },
    "compile": {
        "optimizer": {"type": "sgd", "learning_rate": 1.0e6},
        "loss": "mse",
        "metrics": [],
    },
    "training": {"epochs": 5},
}


def deep_update(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = (
            deep_update(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory):
    """JAX's compilation cache for the session's runs (in-process and subprocesses), in a
    temporary folder rather than the user's Keras home; runs of the same shapes share it."""
    if "DLCLI_COMPILE_CACHE" not in os.environ:
        os.environ["DLCLI_COMPILE_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    return os.environ["DLCLI_COMPILE_CACHE"]


@pytest.fixture
def write_config(tmp_path):
    """write_config(changes=None, name='cfg.yaml', text=None) -> path of a config file."""

    def write(changes: dict | None = None, name: str = "cfg.yaml", text: str | None = None) -> Path:
        path = tmp_path / name
        path.write_text(
            text
            if text is not None
            else yaml.safe_dump(deep_update(TINY, changes or {}), sort_keys=False)
        )
        return path

    return write


@pytest.fixture
def write_flow(write_config):
    """Like write_config(changes) but with one line per layer (`- {type: Dense, ...}`)."""

    def write(changes: dict | None = None, name: str = "cfg.yaml") -> Path:
        data = deep_update(TINY, changes or {})
        return write_config(
            text=yaml.safe_dump(data, sort_keys=False, default_flow_style=None), name=name
        )

    return write


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def cli():
    """cli(*args) -> click Result with .exit_code, .stdout, .stderr (in-process)."""
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def refused_line(cli, config: Path, runs: Path) -> str:
    """The one line `dlcli train CONFIG` exits 2 with (in-process), having made no run folder."""
    done = cli("train", config, "--runs-dir", runs)
    assert done.exit_code == 2, done.stdout + done.stderr
    assert not runs.exists() or not any(runs.iterdir())
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def run_dlcli(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The installed command as a user runs it (python -m dlcli, same interpreter)."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dlcli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stopped_train(config: Path, runs: Path, epoch: int, sig: int) -> tuple[int, str]:
    """`dlcli train CONFIG` in a process of its own, sent `sig` once it reports `epoch`;
    (its exit code, its stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "train", str(config), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    deadline = time.time() + 180
    for line in process.stderr:
        if line.startswith(f"epoch {epoch}/") or time.time() > deadline:
            break
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux's /proc): dlcli has started and
    taken its signals, which Python alone does not do for SIGTERM."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def wait_until_caught(process: subprocess.Popen, sig: int, timeout: float = 120) -> None:
    """Wait until `process` handles `sig` itself: a signal before that is the system's to
    act on (the default action ends the process), however fast or busy the machine."""
    deadline = time.time() + timeout
    while not catches(process.pid, sig):
        if process.poll() is not None or time.time() > deadline:
            raise AssertionError(f"process {process.pid} never took signal {sig}")
        time.sleep(0.01)


def wait_for(predicate, timeout: float = 180, what: str = ""):
    """The first truthy value of `predicate()`, polled; an AssertionError after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def running_pid(folder: Path, pattern: str) -> int | None:
    """The pid in run.json of the run folder `pattern` names under `folder`, once written."""
    for run in folder.glob(pattern):
        with contextlib.suppress(OSError, ValueError):
            return json.loads((run / "run.json").read_text()).get("pid")
    return None


def signal_pending(pid: int, sig: int) -> bool:
    """Whether `sig` waits to be delivered to the (stopped) process `pid` (Linux's /proc)."""
    bits = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            bits |= int(line.split()[1], 16)
    return bool(bits & (1 << (sig - 1)))


def run_python(code: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    """A snippet of Python in a fresh interpreter (what a new process imports, sets, prints)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    # tryfirst: the marks must be on before `-m "not slow"` deselects by them.
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One real finished run (tiny digits MLP), shared by evaluate/predict/show tests. It trains
    for seconds, so every test that uses it, directly or through another fixture, is `slow`."""
    base = tmp_path_factory.mktemp("trained")
    config = base / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            deep_update(
                TINY, {"training": {"epochs": 10}, "output": {"tensorboard": True, "plots": True}}
            )
        )
    )
    result = CliRunner().invoke(
        app,
        ["train", str(config), "--runs-dir", str(base / "runs"), "--quiet"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the shared finished run, so that a test may change or break it."""
    copy = tmp_path / "runs" / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy
