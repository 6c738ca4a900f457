"""A real PostgreSQL server (started here on 127.0.0.1, `tests/postgres.py`) holding a
sweep's Optuna study shared by two `dlcli sweep` processes, and an MLflow backend store:
directly as `output.mlflow.tracking_uri`, and behind an `mlflow server`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import postgres
import pytest
from conftest import run_dlcli
from mlflow.tracking import MlflowClient
from test_tracking import record, start_server, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def database():
    server = postgres.start()
    yield server
    server.stop()


def test_two_sweeps_on_two_machines_make_one_study_in_postgresql(database, tmp_path, write_config):
    storage = database.create_database("sweeps")
    config = write_config(
        {
            "name": "shared",
            "training": {"epochs": 2},
            "sweep": {
                "metric": "val_accuracy",
                "trials": 2,
                "sampler": "random",
                "pruner": "none",
                "space": {"model.layers.0.units": {"choice": [8, 16, 24, 32, 48]}},
            },
        },
    )
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dlcli",
                "sweep",
                str(config),
                "--storage",
                storage,
                "--runs-dir",
                str(tmp_path / f"machine{i}"),
                "--json",
            ],
            env={**os.environ, "NO_COLOR": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    folders = [Path(json.loads(out)["sweep"]) for out, _ in outputs]
    records = [json.loads((f / "sweep.json").read_text()) for f in folders]
    for folder, sweep in zip(folders, records):
        assert sweep["counts"] == {"completed": 2}  # each process ran its own two
        assert not (folder / "study.db").exists()
        assert postgres.PASSWORD not in (folder / "sweep.json").read_text()
        assert sweep["storage"].startswith(f"postgresql://{postgres.USER}")
    import optuna

    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4  # one study of four
    assert sorted(t.user_attrs["sweep"] for t in study.trials) == sorted(
        2 * [r["id"] for r in records]
    )
    assert database.sql("SELECT count(*) FROM trials", "sweeps") == "4"  # in the server, not a file


def test_mlflow_runs_in_postgresql_directly_and_behind_a_server(
    database, tmp_path, write_config, cli
):
    direct = database.create_database("mlflow_direct")
    runs = tmp_path / "runs"
    done = cli(
        "train",
        write_config({"output": {"mlflow": {"tracking_uri": direct}}}),
        "--runs-dir",
        runs,
        "--quiet",
    )
    assert done.exit_code == 0, done.stderr
    run = Path(done.stdout.strip().splitlines()[-1])
    ids = record(run)["mlflow"]
    assert "error" not in ids, ids
    assert postgres.PASSWORD not in (run / "run.json").read_text()
    client = MlflowClient(direct)
    assert client.get_run(ids["run_id"]).info.status == "FINISHED"
    # the files of a store without a server stay in the runs dir, not the working directory
    assert "model.keras" in {a.path for a in client.list_artifacts(ids["run_id"])}
    assert (runs / "mlflow-artifacts").is_dir()

    backend = database.create_database("mlflow_server")
    process, url = start_server(tmp_path / "server", backend=backend)
    try:
        served = run_dlcli(
            "train",
            write_config({"output": {"mlflow": {"tracking_uri": url}}}, name="s.yaml"),
            "--runs-dir",
            runs,
            "--quiet",
        )
        assert served.returncode == 0, served.stderr
        ids = record(Path(served.stdout.strip().splitlines()[-1]))["mlflow"]
        assert "error" not in ids, ids
        assert MlflowClient(url).get_run(ids["run_id"]).info.status == "FINISHED"
        assert database.sql("SELECT count(*) FROM runs", "mlflow_server") == "1"
    finally:
        stop_server(process)
