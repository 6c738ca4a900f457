"""`output.mlflow`: runs logged to a real `mlflow server` (started here, on 127.0.0.1) and to
the SQLite store in the runs dir, read back with MLflow's own client; resume, evaluate, and
a tracking server that is down, silent, refuses the login or cannot store a file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import DIVERGING, refused_line, run_dlcli, stopped_train
from mlflow.tracking import MlflowClient  # the test extra installs MLflow

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, *extra: str, env: dict | None = None, backend: str | None = None):
    """A real `mlflow server` on 127.0.0.1 with its own store (an SQLite file, or `backend`)
    and artifact folder; (process, url) once /health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            backend or f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--workers",
            "1",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "server.log", "w"),  # noqa: SIM115 - the server's own log
        env={**os.environ, **(env or {})},
        cwd=folder,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.3)
    raise AssertionError("mlflow server did not start: " + (folder / "server.log").read_text())


def stop_server(process) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process, url = start_server(tmp_path_factory.mktemp("mlflow-server"))
    yield url
    stop_server(process)


def tracked(write_config, uri: str | None, experiment: str, **changes) -> Path:
    mlflow_setting = {"experiment": experiment, **({"tracking_uri": uri} if uri else {})}
    return write_config(
        {"output": {"mlflow": mlflow_setting}, "training": {"epochs": 4}, **changes}
    )


def the_run(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_a_run_is_logged_with_params_tags_epochs_final_metrics_files_and_status(
    server, write_config, runs_dir, cli
):
    config = tracked(
        write_config,
        server,
        "digits-team",
        training={"epochs": 4, "early_stopping": {"monitor": "val_loss", "patience": 10}},
    )
    done = cli("train", config, "--runs-dir", runs_dir, "--json")
    assert done.exit_code == 0, done.stderr
    printed = json.loads(done.stdout)  # stdout stays the JSON document alone
    run = Path(printed["run"])
    ids = record(run)["mlflow"]
    assert ids["tracking_uri"] == server and ids["experiment"] == "digits-team"
    assert "error" not in ids, ids

    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("digits-team")
    assert experiment.experiment_id == ids["experiment_id"]
    logged = client.get_run(ids["run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == run.name
    params = logged.data.params
    assert params["compile.optimizer.type"] == "adam" and params["training.epochs"] == "4"
    assert params["model.layers.0.units"] == "32" and params["data.source"] == "digits"
    tags = logged.data.tags
    assert tags["dlcli.run_id"] == run.name and tags["dlcli.run_folder"] == str(run.resolve())
    assert tags["dlcli.backend"] == record(run)["runtime"]["backend"]
    assert tags["dlcli.device"] == "CPU" and tags["dlcli.version"]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
        steps = [m.step for m in client.get_metric_history(ids["run_id"], key)]
        assert steps == [1, 2, 3, 4], (key, steps)
    metrics = json.loads((run / "metrics.json").read_text())
    final = logged.data.metrics
    for split in ("train", "test"):
        for name, value in metrics[split].items():
            assert final[f"{split}_{name}"] == pytest.approx(value, rel=1e-6)
    assert final["val_loss"] == pytest.approx(
        next(r for r in client.get_metric_history(ids["run_id"], "val_loss") if r.step == 4).value
    )
    files = {a.path for a in client.list_artifacts(ids["run_id"])}
    assert {"config.yaml", "metrics.json", "history.csv", "run.json", "model.keras"} <= files
    assert "confusion_matrix.csv" in files


def test_resume_continues_the_same_mlflow_run_and_no_step_appears_twice(
    server, write_config, runs_dir, cli
):
    config = tracked(write_config, server, "resumed", training={"epochs": 400, "batch_size": 16})
    code, err = stopped_train(config, runs_dir, 4, signal.SIGINT)
    assert code == 130, err
    [run] = [p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("mlflow")]
    first = record(run)["mlflow"]
    client = MlflowClient(server)
    assert client.get_run(first["run_id"]).info.status == "KILLED"
    kept = json.loads((run / "checkpoints" / "state.json").read_text())["epoch"]

    resumed = cli("train", "--resume", run, "--set", f"training.epochs={kept + 3}")
    assert resumed.exit_code == 0, resumed.stderr
    assert record(run)["mlflow"]["run_id"] == first["run_id"]
    logged = client.get_run(first["run_id"])
    assert logged.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(first["run_id"], "loss")]
    assert sorted(steps) == list(range(1, kept + 4)), steps  # each epoch once
    assert len(client.search_runs([first["experiment_id"]])) == 1

    evaluated = cli("evaluate", run, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    scores = json.loads(evaluated.stdout)["metrics"]
    metrics = client.get_run(first["run_id"]).data.metrics
    assert metrics["eval_test_accuracy"] == pytest.approx(scores["accuracy"], rel=1e-6)

    shown = cli("show", run)
    assert first["run_id"] in shown.stdout


def test_the_default_store_is_sqlite_in_the_runs_dir_and_mlflow_tracking_uri_wins(
    server, write_config, cli, tmp_path, monkeypatch
):
    runs = tmp_path / "runs"
    config = write_config({"training": {"epochs": 2}})
    done = cli("train", config, "--runs-dir", runs, "--set", "output.mlflow=true", "--quiet")
    assert done.exit_code == 0, done.stderr
    run = the_run(done.stdout)
    ids = record(run)["mlflow"]
    assert ids["tracking_uri"] == f"sqlite:///{runs.resolve() / 'mlflow.db'}"
    local = MlflowClient(ids["tracking_uri"])
    logged = local.get_run(ids["run_id"])
    assert logged.info.status == "FINISHED"
    assert local.get_experiment(ids["experiment_id"]).name == "tiny"  # the run's name
    assert (runs / "mlflow-artifacts").is_dir() and not (tmp_path / "mlruns").exists()
    assert "model.keras" in {a.path for a in local.list_artifacts(ids["run_id"])}

    env = run_dlcli(
        "train",
        config,
        "--runs-dir",
        runs,
        "--set",
        "output.mlflow=true",
        "--quiet",
        env={"MLFLOW_TRACKING_URI": server},
    )
    assert env.returncode == 0, env.stderr
    ids = record(the_run(env.stdout))["mlflow"]
    assert ids["tracking_uri"] == server
    assert MlflowClient(server).get_run(ids["run_id"]).info.status == "FINISHED"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ml:pw@127.0.0.1:9")
    shown = cli("env", "--json")
    assert json.loads(shown.stdout)["mlflow"]["tracking_uri"] == "http://ml:***@127.0.0.1:9"


def silent_server():
    """A socket on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], stop, held


@pytest.mark.parametrize("case", ["down", "silent"])
def test_a_server_that_is_down_or_never_answers_costs_one_warning_and_nothing_else(
    write_config, runs_dir, case, cli
):
    if case == "silent":
        port, stop, held = silent_server()
    else:
        port, stop, held = free_port(), None, []
    config = tracked(write_config, f"http://127.0.0.1:{port}", "nowhere")
    started = time.time()
    done = cli("train", config, "--runs-dir", runs_dir, "--json")
    took = time.time() - started
    if stop is not None:
        stop.set()
    assert done.exit_code == 0, done.stderr
    run = Path(json.loads(done.stdout)["run"])
    assert record(run)["status"] == "completed"
    warnings = [line for line in done.stderr.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and "Traceback" not in done.stderr, done.stderr
    error = record(run)["mlflow"]["error"]
    assert error in warnings[0]
    if case == "silent":
        assert held, "the run never tried the server"
        assert "did not answer within" in error
        assert took < 200  # bounded: the requests time out, the run does not wait on them
    else:
        assert "connection refused" in error


def test_a_refused_login_is_one_warning_and_the_password_is_masked_everywhere(
    write_config, runs_dir, tmp_path, cli, monkeypatch
):
    process, url = start_server(
        tmp_path / "auth-server",
        "--app-name",
        "basic-auth",
        env={
            "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-pass-1234",
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
        },
    )
    try:
        uri = url.replace("http://", "http://admin:wrong-pass-5678@")
        config = tracked(write_config, uri, "locked")
        done = cli("train", config, "--runs-dir", runs_dir, "--quiet")
        assert done.exit_code == 0, done.stderr
        run = the_run(done.stdout)
        error = record(run)["mlflow"]["error"]
        assert "refused the login (HTTP 401)" in error
        assert "MLFLOW_TRACKING_USERNAME" in error
        for name in ("run.json", "config.yaml"):
            assert "wrong-pass-5678" not in (run / name).read_text(), name
        assert "admin:***@" in record(run)["mlflow"]["tracking_uri"]
        assert "wrong-pass-5678" not in done.stderr + done.stdout

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-pass-1234")
        good = cli(
            "train",
            write_config({"output": {"mlflow": {"tracking_uri": url}}}),
            "--runs-dir",
            runs_dir,
            "--quiet",
        )
        assert good.exit_code == 0, good.stderr
        assert "error" not in record(the_run(good.stdout))["mlflow"]
    finally:
        stop_server(process)


def test_an_artifact_store_that_cannot_take_files_is_recorded_and_the_run_completes(
    write_config, cli, tmp_path
):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "mlflow-artifacts").write_text("a file where the artifact folder should be\n")
    done = cli(
        "train",
        write_config({"training": {"epochs": 2}}),
        "--runs-dir",
        runs,
        "--set",
        "output.mlflow=true",
        "--quiet",
    )
    assert done.exit_code == 0, done.stderr
    run = the_run(done.stdout)
    tracked_ids = record(run)["mlflow"]
    assert record(run)["status"] == "completed" and tracked_ids["error"]
    assert len([line for line in done.stderr.splitlines() if "MLflow" in line]) == 1
    # the metrics and the status still went: only the files could not
    logged = MlflowClient(tracked_ids["tracking_uri"]).get_run(tracked_ids["run_id"])
    assert logged.info.status == "FINISHED" and "test_accuracy" in logged.data.metrics


def test_output_mlflow_in_the_wrong_form_is_one_line_at_its_key(write_config, cli, runs_dir):
    config = write_config(
        text="name: t\ndata: {source: digits}\nmodel:\n  layers: [{type: Dense}]\n"
        "output:\n  mlflow: yes please\n"
    )
    line = refused_line(cli, config, runs_dir)
    assert ":6:" in line and "output.mlflow" in line and "expected true, false" in line


def test_a_sweep_and_a_cv_are_each_one_parent_run_with_their_runs_nested(
    server, write_config, runs_dir
):
    config = tracked(
        write_config,
        server,
        "nested",
        training={"epochs": 2},
        sweep={
            "metric": "val_accuracy",
            "trials": 2,
            "parallel": 2,
            "space": {"model.layers.0.units": {"choice": [16, 32]}},
        },
    )
    client = MlflowClient(server)
    experiment = None
    for command, file in (("sweep", "sweep.json"), ("cv", "cv.json")):
        extra = ["--folds", "2", "--parallel", "2"] if command == "cv" else []
        done = run_dlcli(command, config, *extra, "--runs-dir", runs_dir, "--json", timeout=600)
        assert done.returncode == 0, done.stderr
        folder = Path(json.loads(done.stdout)[command])
        parent = json.loads((folder / file).read_text())["mlflow"]
        assert "error" not in parent, parent
        logged = client.get_run(parent["run_id"])
        assert logged.info.status == "FINISHED" and logged.data.tags["dlcli.kind"] == command
        assert file in {a.path for a in client.list_artifacts(parent["run_id"])}
        experiment = parent["experiment_id"]
        children = client.search_runs(
            [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent['run_id']}'"
        )
        assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
        if command == "sweep":
            assert logged.data.metrics["completed_trials"] == 2
            assert "best_val_accuracy" in logged.data.metrics
        else:
            assert "val_accuracy_mean" in logged.data.metrics
    assert len(client.search_runs([experiment])) == 6  # two parents, four nested runs


def test_a_failed_run_is_failed_in_mlflow_with_the_epochs_it_ran(
    server, write_config, cli, runs_dir
):
    config = write_config(
        {**DIVERGING, "output": {"mlflow": {"tracking_uri": server, "experiment": "diverged"}}}
    )
    done = cli("train", config, "--runs-dir", runs_dir)
    assert done.exit_code == 1 and "NaN/inf" in done.stderr
    [run] = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert record(run)["status"] == "failed"
    ids = record(run)["mlflow"]
    client = MlflowClient(server)
    logged = client.get_run(ids["run_id"])
    assert logged.info.status == "FAILED"
    assert "history.csv" in {a.path for a in client.list_artifacts(ids["run_id"])}


def test_a_server_that_stops_mid_run_costs_one_warning_and_the_run_completes(
    tmp_path, write_config, runs_dir
):
    process, url = start_server(tmp_path / "stopping")
    config = tracked(write_config, url, "stopping", training={"epochs": 150, "batch_size": 16})
    command = ["train", config, "--runs-dir", runs_dir, "--json"]
    train = subprocess.Popen(
        [sys.executable, "-m", "dlcli", *map(str, command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client, logged, deadline = MlflowClient(url), [], time.time() + 300
    while not logged:  # the first epochs reached the server: then it goes away
        assert train.poll() is None, train.communicate()
        assert time.time() < deadline, "no epoch reached the server"
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], max_results=1
        )
        if runs:
            logged = client.get_metric_history(runs[0].info.run_id, "loss")
        time.sleep(0.2)
    os.kill(train.pid, signal.SIGSTOP)  # the run waits while its server goes away
    stop_server(process)
    os.kill(train.pid, signal.SIGCONT)
    out, err = train.communicate(timeout=600)
    assert train.returncode == 0, err
    run = Path(json.loads(out)["run"])
    assert record(run)["status"] == "completed"
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 150
    warnings = [line for line in err.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and "Traceback" not in err, err
    assert record(run)["mlflow"]["error"] in warnings[0]
    assert record(run)["mlflow"]["run_id"] == runs[0].info.run_id
