"""Run folders under attack or bad luck: planted links, two processes on one run, kills at
the end of a run, signals to evaluate, a full disk, outputs that are FIFOs or links.

Each case goes through the real CLI; "outside" is a folder next to the run that nothing
may change.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_dlcli, wait_until_caught
from test_reliability import LONG, Training


def snapshot(folder: Path) -> dict:
    """Every entry under `folder` (links not followed): kind and content."""
    out = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            out[str(path.relative_to(folder))] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            out[str(path.relative_to(folder))] = ("file", path.read_bytes(), info.st_mtime_ns)
        else:
            out[str(path.relative_to(folder))] = ("other", stat.S_IFMT(info.st_mode))
    return out


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "keep.txt").write_text("mine\n")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (folder / "epoch-0001.keras").write_text("not dlcli's\n")
    return folder


@pytest.fixture
def run(run_copy) -> Path:
    """A private copy of the shared finished run (10 epochs)."""
    return run_copy


def plain_error(result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def _link(target: Path, link: Path) -> None:
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())


# --------------------------------------------------------------------------------------
# 1. links planted in a run folder are never followed


@pytest.mark.parametrize(
    "name", ["checkpoints", "tensorboard", "history.csv", "checkpoints/state.json"]
)
def test_resume_refuses_a_planted_link_and_changes_nothing_outside(cli, run, outside, name):
    _link(outside / ("keep.txt" if "." in name else ""), run / name)
    before = snapshot(outside)
    stderr = plain_error(cli("train", "--resume", run, "--set", "training.epochs=12", "--quiet"), 2)
    assert "symbolic link" in stderr and name.split("/")[-1] in stderr, stderr
    assert snapshot(outside) == before


def test_evaluate_refuses_a_linked_evaluations_file(cli, run, outside):
    _link(outside / "keep.txt", run / "evaluations.jsonl")
    before = snapshot(outside)
    stderr = plain_error(cli("evaluate", run), 2)
    assert "evaluations.jsonl" in stderr and "symbolic link" in stderr
    assert snapshot(outside) == before


@pytest.mark.slow
def test_callback_file_through_a_planted_link_is_refused(cli, tmp_path, write_config, outside):
    config = write_config(
        {"training": {"callbacks": [{"type": "CSVLogger", "filename": "logs/train.csv"}]}}
    )
    first = cli(
        "train", config, "--runs-dir", tmp_path / "runs", "--quiet", "--set", "training.epochs=1"
    )
    assert first.exit_code == 0, first.stderr
    run = Path(first.stdout.strip())
    assert (run / "logs" / "train.csv").is_file()
    _link(outside, run / "logs")
    before = snapshot(outside)
    stderr = plain_error(cli("train", "--resume", run, "--set", "training.epochs=2", "--quiet"), 2)
    assert "logs" in stderr and "symbolic link" in stderr
    assert snapshot(outside) == before


def test_stale_checkpoint_cleanup_deletes_only_dlcli_names(cli, run):
    (run / "checkpoints" / "notes.txt").write_text("mine\n")
    (run / "checkpoints" / "epoch-0002.keras.bak").write_text("mine\n")
    result = cli("train", "--resume", run, "--set", "training.epochs=11", "--quiet")
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch-0002.keras.bak", "epoch-0011.keras", "notes.txt", "state.json"], names


# --------------------------------------------------------------------------------------
# 3. outputs: FIFOs, links and devices are written into, never replaced


def _features_csv(tmp_path: Path) -> Path:
    from sklearn.datasets import load_digits

    x = load_digits().data[:5]
    path = tmp_path / "features.csv"
    path.write_text("\n".join(",".join(str(v) for v in row) for row in x) + "\n")
    return path


def test_predict_output_writes_through_a_link_and_keeps_it(cli, trained_run, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    result = cli("predict", trained_run, _features_csv(tmp_path), "--output", link)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and target.read_text().startswith("prediction\n")
    assert len(target.read_text().splitlines()) == 6


def test_predict_output_into_a_fifo_with_a_reader(cli, trained_run, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader_ready = threading.Event()

    def read():
        with open(fifo) as handle:  # blocks until the writer opens it
            reader_ready.set()
            received.append(handle.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    time.sleep(0.2)  # the reader is waiting in open()
    result = cli("predict", trained_run, _features_csv(tmp_path), "--output", fifo)
    thread.join(timeout=10)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert received and received[0].startswith("prediction\n")


def test_output_into_a_fifo_nobody_reads_is_refused_not_waited_on(cli, trained_run, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    started = time.monotonic()
    stderr = plain_error(cli("predict", trained_run, _features_csv(tmp_path), "--output", fifo), 2)
    assert "FIFO" in stderr and "no process reads" in stderr
    assert time.monotonic() - started < 30
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    stderr = plain_error(cli("init", fifo, "--force"), 2)
    assert "FIFO" in stderr and stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_init_into_a_device_writes_into_it(cli, tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(
            node, stat.S_IFCHR | 0o666, os.makedev(1, 3)
        )  # the null device, in a scratch folder
    except PermissionError:
        pytest.skip("this container may not make device nodes")
    result = cli("init", node, "--force")
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISCHR(node.lstat().st_mode)


# --------------------------------------------------------------------------------------
# 4. one process per run folder


def test_resume_of_a_locked_run_names_the_process_holding_it(cli, run):
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        history = (run / "history.csv").read_text()
        stderr = plain_error(
            cli("train", "--resume", run, "--set", "training.epochs=12", "--quiet"), 2
        )
        assert f"in use by process {os.getpid()}" in stderr
        assert (run / "history.csv").read_text() == history
    finally:
        os.close(fd)


def test_resume_of_a_folder_it_cannot_lock_is_one_line(cli, run):
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").mkdir()  # cannot be opened for writing, as in a read-only folder
    stderr = plain_error(cli("train", "--resume", run, "--set", "training.epochs=12", "--quiet"), 2)
    assert "cannot lock the run folder" in stderr and ".lock" in stderr


@pytest.mark.slow
def test_two_resumes_at_once_one_trains_the_other_exits_2(run):
    command = [
        sys.executable,
        "-m",
        "dlcli",
        "train",
        "--resume",
        str(run),
        "--set",
        "training.epochs=14",
        "--quiet",
    ]
    procs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by process" in loser or "already has 14 epochs" in loser, loser
    epochs = [
        int(line.split(",")[0]) for line in (run / "history.csv").read_text().splitlines()[1:]
    ]
    assert epochs == list(range(1, 15))
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 14


@pytest.mark.slow
def test_concurrent_evaluations_all_answer_and_all_are_recorded(run):
    evaluations = run / "evaluations.jsonl"
    before = len(evaluations.read_text().splitlines()) if evaluations.exists() else 0
    command = [sys.executable, "-m", "dlcli", "evaluate", str(run), "--json"]
    procs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        for _ in range(4)
    ]
    outputs = [(p.wait(timeout=240), p.stdout.read(), p.stderr.read()) for p in procs]
    for code, out, err in outputs:
        assert code == 0, err
        assert json.loads(out)["passed"] is True
    lines = (run / "evaluations.jsonl").read_text().splitlines()[before:]
    assert len(lines) == 4 and all(json.loads(line)["split"] == "test" for line in lines)
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


# --------------------------------------------------------------------------------------
# 6, 7. a run stopped after its last epoch is finished by --resume, exactly


def _as_killed_in_final_phase(run: Path) -> dict:
    """The state a kill after the last epoch leaves: checkpoint and history, no model.keras,
    no metrics.json, run.json `interrupted`. Returns the original metrics."""
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "model.keras").unlink()
    (run / "metrics.json").unlink()
    record = json.loads((run / "run.json").read_text())
    record["status"] = "interrupted"
    (run / "run.json").write_text(json.dumps(record))
    return metrics


def test_resume_finishes_a_run_stopped_after_its_last_epoch(cli, run):
    history = (run / "history.csv").read_text()
    original = _as_killed_in_final_phase(run)
    result = cli("train", "--resume", run, "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    assert (run / "history.csv").read_text() == history  # no epoch trained
    finished = json.loads((run / "metrics.json").read_text())
    assert finished["test"] == original["test"] and finished["epochs_run"] == 10
    assert (run / "model.keras").is_file()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and record["resumes"][-1]["from_epoch"] == 10
    stderr = plain_error(cli("train", "--resume", run), 2)  # now complete: more epochs needed
    assert "already has 10 epochs" in stderr


EARLY = {
    "training": {
        "epochs": 20,
        "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 0.3},
    }
}


@pytest.mark.slow
def test_early_stopped_run_resumes_to_exactly_where_it_ended(cli, tmp_path, write_config):
    result = cli("train", write_config(EARLY), "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    done = json.loads((run / "metrics.json").read_text())
    assert done["epochs_run"] < 20  # early stopping ended it
    stderr = plain_error(cli("train", "--resume", run, "--set", "training.epochs=30"), 2)
    assert "early stopping ended it" in stderr
    assert json.loads((run / "metrics.json").read_text()) == done

    history = (run / "history.csv").read_text()
    original = _as_killed_in_final_phase(run)
    result = cli("train", "--resume", run, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert (run / "history.csv").read_text() == history
    finished = json.loads((run / "metrics.json").read_text())
    assert (
        finished["epochs_run"] == original["epochs_run"]
        and finished["best_epoch"] == original["best_epoch"]
    )
    assert finished["test"] == original["test"]


@pytest.mark.slow
def test_sigterm_in_the_final_phase_then_resume_completes_without_training(tmp_path, write_config):
    training = Training(write_config({"training": {"epochs": 2}}), tmp_path / "runs")
    training.wait_until(lambda: training.epochs >= 2, what="the last epoch")
    training.process.send_signal(signal.SIGTERM)  # scoring, saving, writing: the final phase
    code, out, err = training.finish(timeout=60)
    run = training.folder()
    record = json.loads((run / "run.json").read_text())
    assert "Traceback" not in err
    if code == 0:  # the run had reached its last writes: it completes, and says so
        assert record["status"] == "completed" and out.strip() == str(run)
        return
    assert code == 130, err
    assert record["status"] == "interrupted", record
    history = (run / "history.csv").read_text()
    resumed = run_dlcli("train", "--resume", run, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_run"] == 2
    assert (run / "history.csv").read_text() == history  # nothing trained again
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


# --------------------------------------------------------------------------------------
# 8. signals: evaluate ends 130, a finished training's teardown 0, nothing half-written


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 1.5, 3.0, 4.0, 4.5])
def test_sigterm_to_evaluate_exits_130_without_a_traceback(run, delay):
    process = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "evaluate", str(run), "--split", "train", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    wait_until_caught(process, signal.SIGTERM)  # before it, SIGTERM is the system's to act on
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err  # not even one Python swallowed ("Exception ignored in")
    if process.returncode == 0:  # it finished first, or had printed its result: a whole line
        assert json.loads(out)["passed"] is True
        return
    assert process.returncode == 130, err
    assert "Traceback" not in err and "error: interrupted" in err
    assert json.loads(out)["exit_code"] == 130
    for line in (
        (run / "evaluations.jsonl").read_text().splitlines()
        if (run / "evaluations.jsonl").exists()
        else []
    ):
        json.loads(line)


@pytest.mark.slow
def test_sigterm_after_training_printed_its_result_exits_0(tmp_path, write_config):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            str(write_config()),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    path = process.stdout.readline().strip()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads((Path(path) / "run.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_interrupt_before_any_epoch_says_nothing_is_kept(tmp_path, write_config):
    slow = {
        "model": {
            "layers": [
                {"type": "Dense", "units": 1024, "activation": "relu"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ]
        },
        "training": {"epochs": 3, "batch_size": 1},
        "runtime": {"steps_per_execution": 1},
    }
    training = Training(write_config(slow), tmp_path / "runs")
    training.wait_until(lambda: training.folder() is not None, what="the run folder")
    training.process.send_signal(signal.SIGINT)  # in epoch 1: the folder appears just before fit
    code, _, err = training.finish(timeout=60)
    assert code == 130, err
    assert training.epochs == 0, err  # a cut epoch is neither recorded nor reported
    assert "holds no completed epoch yet" in err and "keeps" not in err
    assert not (training.folder() / "checkpoints" / "state.json").exists()
    assert json.loads((training.folder() / "run.json").read_text())["status"] == "interrupted"


def test_a_signal_while_the_folder_is_claimed_marks_it_interrupted(
    tmp_path, write_config, monkeypatch
):
    """The moment the folder appears is covered too: a Ctrl-C right after it is made (before
    training starts) leaves `interrupted`, never a folder stuck at `running`."""
    from dlcli.errors import Interrupted
    from dlcli.training import session as training

    made = training.RunFolder.create

    def create_then_signal(*args, **kwargs):
        run = made(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # delivered while the folder is being claimed
        return run

    monkeypatch.setattr(training.RunFolder, "create", create_then_signal)
    with pytest.raises(Interrupted, match="holds no completed epoch yet"):
        training.train(write_config(), runs_dir=tmp_path / "runs", progress=False)
    (folder,) = (tmp_path / "runs").iterdir()
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"


def test_an_interrupted_command_in_process_leaves_the_callers_signals_alone(
    cli, write_config, monkeypatch
):
    """Called in-process (a notebook, a test), an interrupted command exits 130 and leaves
    the caller's SIGINT/SIGTERM handlers as they were: ignoring them there would make every
    process the caller starts later deaf to Ctrl-C."""
    from dlcli.training import session

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(session, "train", interrupted)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    result = cli("train", write_config())
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert {sig: signal.getsignal(sig) for sig in before} == before


# --------------------------------------------------------------------------------------
# 10. damaged run files: exit 2, never a traceback


def test_run_json_that_is_an_array_is_a_clear_error(cli, run):
    (run / "run.json").write_text("[1, 2, 3]\n")
    plain_error(cli("train", "--resume", run, "--set", "training.epochs=12", "--quiet"), 2)
    assert "run.json" in plain_error(cli("evaluate", run), 2)


def test_labels_json_that_is_an_object_is_a_clear_error(cli, run, tmp_path):
    (run / "labels.json").write_text('{"0": "zero"}\n')
    stderr = plain_error(cli("predict", run, _features_csv(tmp_path)), 2)
    assert "labels.json" in stderr and "not a list" in stderr


# --------------------------------------------------------------------------------------
# 12. a full disk: one line naming the file, the run marked failed, no temp file left


def _small_files(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_disk_full_mid_run_names_the_file_and_marks_the_run_failed(tmp_path, write_config):
    big = {
        "model": {
            "layers": [
                {"type": "Dense", "units": 256, "activation": "relu"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ]
        }
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            str(write_config(big)),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=_small_files(100_000),
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = json.loads(result.stdout)["error"]
    assert "I/O error on " in error and ".keras" in error and "File too large" in error, error
    run = next(p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and ".keras" in record["error"]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_evaluation_that_cannot_be_recorded_keeps_its_json(cli, run):
    (run / "evaluations.jsonl").unlink(missing_ok=True)
    (run / "evaluations.jsonl").mkdir()  # appending to it fails as on a read-only folder
    result = cli("evaluate", run, "--json")
    assert result.exit_code == 1, result.stderr
    payload = json.loads(result.stdout)
    assert "could not be recorded" in payload["error"] and "evaluations.jsonl" in payload["error"]
    assert 0 <= payload["metrics"]["accuracy"] <= 1


@pytest.mark.slow
def test_evaluate_on_a_full_disk_is_one_line_with_json(run):
    result = subprocess.run(
        [sys.executable, "-m", "dlcli", "evaluate", str(run), "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=_small_files(10),
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    payload = json.loads(result.stdout)
    assert "File too large" in payload["error"] and "accuracy" in payload["metrics"]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


# --------------------------------------------------------------------------------------
# 13. JSON is strict: a NaN metric is null, never a bare NaN


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_overflowing_inputs_give_null_not_nan(cli, tmp_path, write_config):
    regression = {
        "data": {"source": "diabetes"},
        "compile": {"loss": "mse", "metrics": ["mae"]},
        "model": {"layers": [{"type": "Dense", "units": 1}]},  # linear: overflow reaches the loss
        "training": {"epochs": 1},
    }
    trained = cli("train", write_config(regression), "--runs-dir", tmp_path / "runs", "--quiet")
    assert trained.exit_code == 0, trained.stderr
    run = Path(trained.stdout.strip())
    data = json.loads((run / "run.json").read_text())["data"]
    names = data["features"] or [f"x{i}" for i in range(data["input_shape"][0])]
    path = tmp_path / "huge.csv"  # finite in float32, but the model's sums overflow
    path.write_text(
        ",".join([*names, "target"])
        + "\n"
        + "".join(",".join(["3e38"] * len(names) + ["1"]) + "\n" for _ in range(10))
    )
    result = cli("evaluate", run, "--data", path, "--json")
    assert result.exit_code == 0, result.stderr
    payload = _strict(result.stdout)
    assert payload["metrics"]["loss"] is None  # inf/NaN in, null out
    for line in (run / "evaluations.jsonl").read_text().splitlines():
        assert _strict(line)["metrics"]["loss"] is None


def test_a_run_folder_is_written_with_strict_json_only(trained_run):
    for name in ("run.json", "metrics.json", "checkpoints/state.json"):
        _strict((trained_run / name).read_text())


@pytest.mark.slow
def test_interrupt_message_in_long_training_names_the_epochs_kept(tmp_path, write_config):
    training = Training(write_config(LONG), tmp_path / "runs")
    training.wait_until(lambda: training.epochs >= 2, what="epoch 2")
    training.process.send_signal(signal.SIGINT)
    code, _, err = training.finish(timeout=60)
    assert code == 130, err
    state = json.loads((training.folder() / "checkpoints" / "state.json").read_text())
    assert f"keeps {state['epoch']} completed epoch" in err
