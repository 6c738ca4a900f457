"""Reliability through the real CLI: what a run folder looks like after `kill -9` at
different moments, a double Ctrl-C, several trainings at once, crafted model files and
paths that try to leave the run folder, a runs dir that is a file, and reproducibility.

Training that must be killed runs as a real `python -m dlcli train` subprocess; the
checks afterwards (runs, show, resume) run in-process, which keeps this file near a
minute on 2 cores.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

# A long digits run that is killed long before it ends.
LONG = {"training": {"epochs": 300, "batch_size": 16}}

# Files a run folder may hold; anything else not hidden is a stray.
RUN_FILES = {
    "config.yaml",
    "run.json",
    "history.csv",
    "metrics.json",
    "model.keras",
    "checkpoints",
    "evaluations.jsonl",
    "labels.json",
    "summary.txt",
    "curves.png",
    "tensorboard",
}
# checkpoints/: state.json names the epoch file and early stopping's best weights it goes with.
CHECKPOINT_FILE = re.compile(r"^(epoch-\d{4}\.keras|best-\d{4}\.npz|state\.json)$")


# --------------------------------------------------------------------------------------
# a training subprocess whose stderr is read as it comes


class Training:
    """`python -m dlcli train CONFIG --runs-dir RUNS` with stderr drained by a thread."""

    def __init__(self, config: Path, runs: Path, *extra: str):
        self.runs = runs
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dlcli", "train", str(config), "--runs-dir", str(runs), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.lines: list[str] = []
        self.epochs = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        for line in self.process.stderr:
            self.lines.append(line)
            match = re.match(r"epoch (\d+)/", line)
            if match:
                self.epochs = int(match.group(1))

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def folder(self) -> Path | None:
        found = (
            [p for p in self.runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
            if self.runs.is_dir()
            else []
        )
        return found[0] if found else None

    def wait_until(self, predicate, timeout: float = 90.0, what: str = "") -> None:
        deadline = time.time() + timeout
        while not predicate():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"training ended (exit {self.process.returncode}) before {what}:\n{self.stderr}"
                )
            if time.time() > deadline:
                self.kill()
                raise AssertionError(f"timed out waiting for {what}:\n{self.stderr}")
            time.sleep(0.001)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)  # reaped: the pid is gone, not a zombie
        self._reader.join(timeout=10)

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        out = self.process.stdout.read()
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.process.returncode, out, self.stderr


# --------------------------------------------------------------------------------------
# checks of a run folder after a hard kill


def _history(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        return [], []
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), f"history.csv ends mid-line: {text[-200:]!r}"
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return [], []
    header, body = rows[0], rows[1:]
    assert header[0] == "epoch", header
    for row in body:
        assert len(row) == len(header), f"incomplete history row {row} for header {header}"
    epochs = [int(row[0]) for row in body]
    assert epochs == list(range(1, len(body) + 1)), (
        f"history epochs not consecutive from 1: {epochs}"
    )
    return header, body


def _check_folder_after_kill(run: Path) -> int:
    """Every file whole and valid; returns the epochs that checkpoints/ holds (0: none)."""
    import keras

    # run.json, state.json, metrics.json and any other JSON file parse
    held = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert (run / "run.json").is_file(), (
        f"killed run folder has no run.json (it holds {held}): `runs` cannot tell it was killed"
    )
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "running" and record["pid"], record
    for path in run.rglob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_text())

    # no stray file under a real name: temporaries are hidden (leading dot)
    strays = [
        p.name for p in run.iterdir() if not p.name.startswith(".") and p.name not in RUN_FILES
    ]
    assert not strays, f"unexpected files in the run folder: {strays}"
    checkpoints = run / "checkpoints"
    if checkpoints.is_dir():
        strays = [
            p.name
            for p in checkpoints.iterdir()
            if not p.name.startswith(".") and not CHECKPOINT_FILE.match(p.name)
        ]
        assert not strays, f"unexpected files in checkpoints/: {strays}"

    _, rows = _history(run / "history.csv")

    state_path = checkpoints / "state.json"
    completed = 0
    for saved in checkpoints.glob("epoch-*.keras") if checkpoints.is_dir() else []:
        assert zipfile.is_zipfile(saved), f"{saved.name} is not a zip archive"
    if state_path.exists():
        state = json.loads(state_path.read_text())
        completed = int(state["epoch"])
        assert completed >= 1
        last = checkpoints / state["checkpoint"]
        assert state["checkpoint"] == f"epoch-{completed:04d}.keras", state
        assert last.exists(), f"state.json names {state['checkpoint']}, which is missing"
        model = keras.saving.load_model(last, safe_mode=True)
        assert model.output_shape[-1] == 10
        assert len(rows) >= completed, (
            f"state.json says {completed} epochs but history.csv has {len(rows)} rows"
        )
    return completed


# --------------------------------------------------------------------------------------
# 1. hard kills


_RNG = random.Random(20240611)  # seeded: the same moments on every run of the suite
_EARLY = (_RNG.randint(2, 4), _RNG.uniform(0.0, 0.3))
_LATE = (_RNG.randint(12, 20), _RNG.uniform(0.0, 0.5))
_AFTER_RUN_JSON = _RNG.uniform(0.0, 0.05)


def _folder_appears(t: Training):  # the very first moment: the folder exists, maybe nothing in it
    t.wait_until(lambda: t.folder() is not None, what="the run folder")


def _run_json_appears(t: Training):
    t.wait_until(
        lambda: t.folder() is not None and (t.folder() / "run.json").exists(), what="run.json"
    )
    time.sleep(_AFTER_RUN_JSON)


def _after_a_few_epochs(t: Training):
    epoch, delay = _EARLY
    t.wait_until(lambda: t.epochs >= epoch, what=f"epoch {epoch}")
    time.sleep(delay)


def _during_a_checkpoint_write(t: Training):  # after one checkpoint, while the next is written
    t.wait_until(
        lambda: t.folder() is not None and (t.folder() / "checkpoints" / "state.json").exists(),
        what="a first checkpoint",
    )
    checkpoints = t.folder() / "checkpoints"
    t.wait_until(lambda: any(checkpoints.glob(".*.tmp.keras")), what="a checkpoint being written")


def _later(t: Training):
    epoch, delay = _LATE
    t.wait_until(lambda: t.epochs >= epoch, what=f"epoch {epoch}")
    time.sleep(delay)


KILL_POINTS = {
    "folder-appears": _folder_appears,
    "run-json-appears": _run_json_appears,
    f"{_EARLY[1]:.2f}s-after-epoch-{_EARLY[0]}": _after_a_few_epochs,
    "mid-checkpoint-write": _during_a_checkpoint_write,
    f"{_LATE[1]:.2f}s-after-epoch-{_LATE[0]}": _later,
}


@pytest.mark.slow
@pytest.mark.parametrize("label", list(KILL_POINTS))
def test_kill_9_leaves_a_valid_resumable_run(label, tmp_path, write_config, cli):
    runs = tmp_path / "runs"
    training = Training(write_config(LONG), runs)
    KILL_POINTS[label](training)
    training.kill()
    assert training.process.returncode == -signal.SIGKILL, training.stderr
    run = training.folder()
    assert run is not None

    completed = _check_folder_after_kill(run)

    listed = cli("runs", "--runs-dir", runs, "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)["runs"]
    assert [(r["id"], r["status"]) for r in rows] == [(run.name, "killed")], rows

    shown = cli("show", run.name, "--runs-dir", runs, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "killed"

    total = completed + 2 if completed else 2
    resumed = cli("train", "--resume", run, "--set", f"training.epochs={total}", "--quiet")
    assert resumed.exit_code == 0, resumed.stderr
    _, history = _history(run / "history.csv")
    assert [int(r[0]) for r in history] == list(range(1, total + 1))
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed", record
    assert len(record["resumes"]) == 1 and record["resumes"][0]["from_epoch"] == completed, record[
        "resumes"
    ]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == total
    listed = json.loads(cli("runs", "--runs-dir", runs, "--json").stdout)["runs"]
    assert [r["status"] for r in listed] == ["completed"]


# --------------------------------------------------------------------------------------
# 2. double Ctrl-C


@pytest.mark.slow
def test_double_ctrl_c_exits_130_and_marks_the_run_interrupted(tmp_path, write_config):
    runs = tmp_path / "runs"
    training = Training(write_config(LONG), runs)
    training.wait_until(lambda: training.epochs >= 3, what="epoch 3")
    training.process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    if training.process.poll() is None:
        training.process.send_signal(signal.SIGINT)
    code, _, err = training.finish(timeout=60)
    assert code == 130, err
    assert "Traceback" not in err, err
    run = training.folder()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted", record
    _history(run / "history.csv")
    state = run / "checkpoints" / "state.json"
    if state.exists():
        named = json.loads(state.read_text())["checkpoint"]
        assert zipfile.is_zipfile(run / "checkpoints" / named)


# --------------------------------------------------------------------------------------
# 3. concurrency


@pytest.mark.slow
def test_three_trainings_at_once_get_three_run_folders(tmp_path, write_config):
    config = write_config({"training": {"epochs": 2}})
    runs = tmp_path / "runs"
    trainings = [Training(config, runs, "--quiet") for _ in range(3)]
    results = [t.finish(timeout=240) for t in trainings]
    for code, _, err in results:
        assert code == 0, err
    folders = [Path(out.strip().splitlines()[-1]) for _, out, _ in results]
    assert len(set(folders)) == 3, folders
    assert sorted(p.name for p in runs.iterdir()) == sorted(f.name for f in folders)
    for folder in folders:
        record = json.loads((folder / "run.json").read_text())
        assert record["status"] == "completed" and record["id"] == folder.name
        _, rows = _history(folder / "history.csv")
        assert len(rows) == 2


def _create_at_once(runs: str, barrier, queue) -> None:
    from dlcli.runs.runfolder import RunFolder

    barrier.wait()
    try:
        queue.put(str(RunFolder.create(runs, "same").path))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"error: {exc!r}")


@pytest.mark.slow
def test_sixteen_processes_creating_the_same_run_get_distinct_folders(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has TensorFlow loaded
    runs = tmp_path / "runs"
    barrier, queue = ctx.Barrier(16), ctx.Queue()
    processes = [
        ctx.Process(target=_create_at_once, args=(str(runs), barrier, queue)) for _ in range(16)
    ]
    for p in processes:
        p.start()
    results = [queue.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert not [r for r in results if r.startswith("error:")], results
    assert len(set(results)) == 16, results
    assert sorted(p.name for p in runs.iterdir()) == sorted(Path(r).name for r in results)


# --------------------------------------------------------------------------------------
# 4. security


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_a_model_keras_with_a_lambda_is_refused_and_never_runs(trained_run, tmp_path, cli):
    import keras

    marker = tmp_path / "lambda-ran"
    # The layer's function leaves a marker when it runs (building the model runs it once, here).
    fn = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1] * 2")
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Lambda(fn), keras.layers.Dense(10, activation="softmax")]
    )
    assert marker.exists(), "the crafted layer's code did not run when the model was built"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    copy = tmp_path / "crafted"
    shutil.copytree(trained_run, copy)
    model.save(copy / "model.keras")
    marker.unlink(missing_ok=True)
    features = tmp_path / "some.csv"
    features.write_text("\n".join(",".join(["1.0"] * 64) for _ in range(3)) + "\n")
    before = (
        (copy / "evaluations.jsonl").read_text() if (copy / "evaluations.jsonl").exists() else None
    )

    for args in (("evaluate", copy), ("predict", copy, features)):
        result = cli(*args)
        assert result.exit_code == 2, (args[0], result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout, args[0]
        errors = _error_lines(result.stderr)
        assert len(errors) == 1 and "model.keras" in errors[0], (args[0], result.stderr)
        assert not marker.exists(), f"{args[0]} ran the Lambda's code"
    after = (
        (copy / "evaluations.jsonl").read_text() if (copy / "evaluations.jsonl").exists() else None
    )
    assert after == before, "a refused evaluation was recorded"


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "/tmp/abs-name"])
def test_a_run_name_that_leaves_the_runs_dir_is_refused(name, tmp_path, write_config, cli):
    config = write_config()
    runs = tmp_path / "work" / "runs"
    runs.mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = cli("train", config, "--runs-dir", runs, "--set", f"name={name}")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = _error_lines(result.stderr)
    assert errors and "name" in errors[0], result.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "something was written"
    assert not Path("/tmp/abs-name").exists()


def _escaping_callback(where: str, tmp_path: Path, write_config) -> tuple[Path, Path, Path]:
    """(config, runs dir, the file the callback would write outside the run folder)."""
    runs = tmp_path / "runs"
    escape = runs / "escape.csv" if where == "relative" else tmp_path / "escape.csv"
    filename = "../escape.csv" if where == "relative" else str(escape)
    config = write_config(
        {"training": {"callbacks": [{"type": "CSVLogger", "filename": filename}]}}
    )
    return config, runs, escape


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_a_callback_file_outside_the_run_folder_is_refused(where, tmp_path, write_config, cli):
    config, runs, escape = _escaping_callback(where, tmp_path, write_config)
    result = cli("train", config, "--runs-dir", runs)
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and "escape.csv" in errors[0], result.stderr
    assert not escape.exists()
    folders = list(runs.iterdir()) if runs.exists() else []
    assert not any((f / "history.csv").exists() for f in folders), "training ran"


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_a_callback_file_outside_the_run_folder_is_a_config_error_before_any_folder(
    where, tmp_path, write_config, cli
):
    """Exit 2 is found before training starts; `validate` reports every such problem."""
    config, runs, escape = _escaping_callback(where, tmp_path, write_config)
    checked = cli("validate", config)
    assert checked.exit_code == 2, (
        f"validate accepted a callback file outside the run folder:\n{checked.stdout}"
    )
    assert "Traceback" not in checked.stderr
    assert "escape.csv" in " ".join(_error_lines(checked.stderr))
    result = cli("train", config, "--runs-dir", runs)
    assert result.exit_code == 2, result.stderr
    folders = list(runs.iterdir()) if runs.exists() else []
    assert not folders, (
        f"a failed run folder was left behind for a config error: {[f.name for f in folders]}"
    )
    assert not escape.exists()


# --------------------------------------------------------------------------------------
# 5. I/O


@pytest.mark.parametrize("command", ["train", "runs", "evaluate"])
def test_runs_dir_that_is_a_regular_file_is_one_clear_error(command, tmp_path, write_config, cli):
    config = write_config()
    not_a_dir = tmp_path / "runs.txt"
    not_a_dir.write_text("I am a file\n")
    args = {"train": ("train", config), "runs": ("runs",), "evaluate": ("evaluate",)}[command]
    result = cli(*args, "--runs-dir", not_a_dir)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and str(not_a_dir) in errors[0], result.stderr
    assert not_a_dir.read_text() == "I am a file\n"


# --------------------------------------------------------------------------------------
# 6. reproducibility


@pytest.mark.slow
def test_deterministic_runs_repeat_and_the_seed_changes_the_split(tmp_path, write_config, cli):
    config = write_config({"runtime": {"deterministic": True}})
    runs = tmp_path / "runs"

    def train(*extra):
        result = cli("train", config, "--runs-dir", runs, "--json", "--quiet", *extra)
        assert result.exit_code == 0, result.stderr
        out = json.loads(result.stdout)
        record = json.loads((Path(out["run"]) / "run.json").read_text())
        return out, record

    first, first_record = train()
    second, second_record = train()
    assert first["run"] != second["run"]
    assert first["test"] == second["test"]
    assert (
        first_record["data"]["fingerprint"]
        and first_record["data"]["fingerprint"] == second_record["data"]["fingerprint"]
    )
    assert first_record["runtime"].get("deterministic") is True

    _, other_record = train("--set", "seed=8")
    assert other_record["data"]["fingerprint"] != first_record["data"]["fingerprint"]
