"""`dlcli sweep`: trials as run folders, Optuna's search, failures, kills and resumes,
a shared storage, and errors in the space found before any trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY, deep_update, run_dlcli, running_pid, signal_pending, wait_for

from dlcli.cli.render import number
from dlcli.config.load import load_config
from dlcli.config.text import parse_override
from dlcli.runs.runfolder import RunFolder

# Diabetes regression: 442 rows, a trial trains in about a second after its imports. SGD
# with a learning rate of a million overflows to NaN in the first epoch: a failing trial.
REGRESSION = {
    "name": "reg",
    "seed": 3,
    "data": {"source": "diabetes", "validation_split": 0.2, "test_split": 0.2},
    "model": {
        "layers": [
            {"type": "Dense", "units": 16, "activation": "relu"},
            {"type": "Dense", "units": 1},
        ]
    },
    "compile": {"optimizer": {"type": "sgd", "learning_rate": 0.01}, "loss": "mse"},
    "training": {"epochs": 3, "batch_size": 32},
    "output": {"tensorboard": False, "plots": False},
}


def write(tmp_path: Path, config: dict, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    return path


def sweep_record(folder: Path) -> dict:
    return json.loads((folder / "sweep.json").read_text())


def sweep_folders(runs: Path) -> list[Path]:
    return (
        sorted(p for p in runs.iterdir() if (p / "sweep.json").is_file()) if runs.is_dir() else []
    )


def trial_states(folder: Path) -> dict:
    with_record = (folder / "sweep.json").read_text()
    try:
        return json.loads(with_record).get("counts", {})
    except ValueError:
        return {}


# -- fast: the space, the overrides, the schema ------------------------------------------------


@pytest.mark.parametrize(
    "value", [1e-05, 0.001, 3.0e-12, 1e20, 64, True, "relu", "1e-3", None, 0.5]
)
def test_a_trial_value_reads_back_through_set_as_the_same_value(value):
    from dlcli.tuning.trials import override

    path, parsed = parse_override(override("compile.optimizer.learning_rate", value))
    assert path == ("compile", "optimizer", "learning_rate")
    assert parsed == value and type(parsed) is type(value)


def test_each_malformed_range_is_an_error_at_its_line(tmp_path):
    text = yaml.safe_dump(TINY, sort_keys=False) + (
        "sweep:\n"
        "  space:\n"
        "    training.batch_size: {int: [64, 16]}\n"
        "    model.layers.0.units: {choice: []}\n"
        "    compile.optimizer.learning_rate: {log_uniform: [0, 0.1]}\n"
        "    training.epochs: {int: [1, 10], step: 4}\n"
        "    model.layers.0.activation: {uniformm: [0, 1]}\n"
        "  sampler: grdi\n"
    )
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    lines = text.splitlines()
    with pytest.raises(Exception) as caught:
        load_config(config)
    message = str(caught.value)

    def at(fragment: str) -> str:
        return f"{config}:{next(i for i, line in enumerate(lines, 1) if fragment in line)}"

    assert (
        f"{at('batch_size: {int')}: sweep.space.training.batch_size: int: low must be below high"
        in message
    )
    assert f"{at('units: {choice')}: " in message and "choice takes a non-empty list" in message
    assert f"{at('learning_rate: {log')}: " in message and "log_uniform needs low > 0" in message
    assert f"{at('epochs: {int')}: " in message and "not a multiple of step 4" in message
    assert f"{at('uniformm')}: " in message and "did you mean 'uniform'" in message
    assert f"{at('sampler: grdi')}: " in message and "tpe, random, grid" in message


def test_the_sweep_section_is_not_part_of_what_a_run_trains(tmp_path):
    config = load_config(
        write(
            tmp_path, deep_update(TINY, {"sweep": {"space": {"training.epochs": {"int": [1, 3]}}}})
        )
    )
    assert config.sweep.trials == 20 and config.sweep.sampler == "tpe"
    assert "sweep" not in config.to_dict() and "sweep:" not in config.to_yaml()


def test_the_grid_sampler_takes_finite_lists_only():
    from dlcli.config.space import grid

    lists, endless = grid(
        {
            "a": {"choice": [1, 2]},
            "b": {"int": [16, 64], "step": 16},
            "c": {"uniform": [0.0, 0.5], "step": 0.25},
            "d": {"log_uniform": [1e-4, 1e-2]},
        }
    )
    assert lists == {"a": [1, 2], "b": [16, 32, 48, 64], "c": [0.0, 0.25, 0.5]}
    assert endless == ["d"]


def test_space_errors_stop_the_sweep_before_any_trial(tmp_path, cli, runs_dir):
    config = deep_update(
        TINY,
        {
            "sweep": {
                "metric": "val_acuracy",
                "space": {
                    "training.epochz": {"int": [1, 3]},  # a key the config lacks
                    "model.layers.5.units": {"choice": [8, 16]},  # no such layer
                    "model.layers.0.unitz": {"choice": [8, 16]},  # Dense has no such argument
                    "training.batch_size": {"int": [0, 64], "step": 16},  # the schema refuses 0
                    "compile.optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0e-2]},  # fine
                },
            }
        },
    )
    path = write(tmp_path, config)
    lines = path.read_text().splitlines()

    def line_of(fragment: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if fragment in line)

    result = cli("sweep", path, "--runs-dir", runs_dir)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any(
        f"{path}:{line_of('training.epochz')}: sweep.space.training.epochz" in e
        and "unknown key 'epochz'" in e
        for e in errors
    ), errors
    assert any(
        f":{line_of('layers.5.units')}:" in e and "index 5 is out of range" in e for e in errors
    ), errors
    assert any(
        f":{line_of('layers.0.unitz')}:" in e and "unitz" in e and "units" in e for e in errors
    ), errors
    assert any(
        f":{line_of('training.batch_size')}:" in e and "batch_size = 0" in e for e in errors
    ), errors
    assert any(
        f":{line_of('metric:')}: sweep.metric" in e and "did you mean 'val_accuracy'" in e
        for e in errors
    ), errors
    assert not any("learning_rate" in e for e in errors), errors
    assert len(errors) == 5, errors
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), (
        "nothing is written before the trials"
    )


def test_more_trials_at_once_than_cores_is_refused(tmp_path, cli, runs_dir):
    path = write(
        tmp_path, deep_update(TINY, {"sweep": {"space": {"training.epochs": {"int": [1, 3]}}}})
    )
    cores = len(os.sched_getaffinity(0))
    result = cli("sweep", path, "--parallel", cores + 1, "--runs-dir", runs_dir)
    assert result.exit_code == 2
    assert f"more than the {cores} cores" in result.stderr
    assert not runs_dir.exists()


def test_a_config_without_a_sweep_section_is_a_usage_error(tmp_path, cli, runs_dir):
    path = write(tmp_path, TINY)
    result = cli("sweep", path, "--runs-dir", runs_dir)
    assert result.exit_code == 2
    assert f"{path}: has no sweep: section" in result.stderr


def test_the_python_api_sweep_and_export_stay_callable_once_their_modules_are_imported():
    import importlib

    import dlcli

    module = importlib.import_module("dlcli.tuning.sweep")
    importlib.import_module("dlcli.use.export")
    assert callable(dlcli.sweep) and callable(dlcli.export) and callable(module.run_sweep)
    with pytest.raises(dlcli.ConfigError, match="give a CONFIG with a sweep: section"):
        dlcli.sweep()


@pytest.mark.slow
def test_a_trial_that_trails_the_median_is_pruned_from_its_history(tmp_path):
    """The pruner sees each epoch the trial's process writes to history.csv and stops the
    process with SIGINT (a stand-in process here: the bookkeeping is what is tested)."""
    from optuna.trial import TrialState

    from dlcli.config.space import distributions
    from dlcli.tuning.preflight import Target
    from dlcli.tuning.sweep import Sweeper

    config = load_config(
        write(
            tmp_path,
            deep_update(
                TINY,
                {
                    "sweep": {
                        "space": {
                            "compile.optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0e-2]}
                        }
                    }
                },
            ),
        )
    )
    folder = RunFolder.create(
        tmp_path / "runs",
        "tiny-sweep",
        record={"started": "2026-11-24T10:00:00+00:00"},
        files={"config.yaml": config.to_yaml()},
        record_file="sweep.json",
    )
    sweeper = Sweeper(
        folder, config, config.sweep, Target("val_loss", "min"), f"sqlite:///{tmp_path / 's.db'}"
    )
    study = sweeper.open_study(fresh=True)
    dists = distributions(config.sweep.space)
    for value in (0.5, 0.45, 0.4):  # three completed trials, their val_loss per epoch
        trial = study.ask(dists)
        for epoch in (1, 2, 3):
            trial.report(value + 0.1 * (3 - epoch), step=epoch)
        study.tell(trial, value)
    from dlcli.tuning.trials import TrialProcess

    run = RunFolder.create(folder.path, "tiny-t0003")
    # A stand-in that takes SIGINT's default action whatever it inherited, signalled only
    # once it says it has set that up: a SIGINT while the interpreter starts would raise
    # KeyboardInterrupt there (exit 1), one before the exec would go to inherited handlers.
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
            + "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout.readline().strip() == b"ready"
    trial = study.ask(dists)
    tp = TrialProcess(
        trial, process, 0, time.time(), folder.path / "t.log", folder.path / "t.note", run=run.path
    )
    run.append_history({"epoch": 1, "loss": 3.0, "val_loss": 3.0})
    sweeper._report(tp, final=False)
    assert tp.pruned_at is None, "not before the warm-up epochs"
    run.append_history({"epoch": 2, "loss": 2.9, "val_loss": 2.9})
    sweeper._report(tp, final=False)
    assert tp.pruned_at == 2
    assert process.wait(timeout=10) == -signal.SIGINT
    sweeper.running[trial.number] = tp
    sweeper._finish(tp, process.returncode)
    assert study.trials[-1].state == TrialState.PRUNED
    row = sweeper.write("running")["trials"][-1]
    assert (
        row["state"] == "pruned" and row["last_value"] == pytest.approx(2.9) and row["epochs"] == 2
    )


# -- slow: whole sweeps through the real CLI ---------------------------------------------------


@pytest.mark.slow
def test_a_sweep_runs_trials_side_by_side_records_a_failure_and_keeps_the_best(tmp_path, cli):
    config = deep_update(
        REGRESSION,
        {
            "sweep": {
                "sampler": "grid",
                "parallel": 2,
                "trials": 5,
                "space": {"compile.optimizer.learning_rate": {"choice": [0.003, 1.0e6, 0.001]}},
            }
        },
    )
    runs = tmp_path / "runs"
    result = cli(
        "sweep", write(tmp_path, config), "--runs-dir", runs, "--json"
    )  # the trials are processes
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    folder = Path(summary["sweep"])
    assert folder.parent == runs and folder.name.startswith("reg-sweep-")
    record = sweep_record(folder)
    # The grid holds three values: the sweep stops there, whatever trials asks.
    assert summary["trials"] == {"completed": 2, "failed": 1} == record["counts"]
    assert (
        record["status"] == "completed"
        and record["metric"] == "val_loss"
        and record["direction"] == "min"
    )
    by_rate = {t["params"]["compile.optimizer.learning_rate"]: t for t in record["trials"]}
    failed = by_rate[1.0e6]
    assert failed["state"] == "failed" and "NaN" in failed["error"]
    cores = len(os.sched_getaffinity(0))
    assert all(t["cores"] == max(1, cores // 2) for t in record["trials"])
    done = [by_rate[0.003], by_rate[0.001]]
    best = min(done, key=lambda t: t["value"])
    assert summary["best"] == {
        "trial": best["number"],
        "value": best["value"],
        "params": best["params"],
        "run": best["run"],
    }
    # Each trial is a complete run folder inside the sweep folder; its value is its best epoch.
    for trial in done:
        run = RunFolder(folder / trial["run"])
        assert run.record.status == "completed"
        assert trial["value"] == pytest.approx(min(r["val_loss"] for r in run.history()))
    assert RunFolder(folder / failed["run"]).record.status == "failed"
    for name in ("best.yaml", "history.png", "importance.png", "study.db", "config.yaml"):
        assert (folder / name).stat().st_size > 0, name
    assert set(record["importance"]) == {"compile.optimizer.learning_rate"}
    assert not list(folder.glob(".logs/spare-*")), "the spare process nobody needed is gone"
    # `runs` shows the sweep as one line; inside it, the trials are runs like any other.
    listed = run_dlcli("runs", "--runs-dir", runs, "--json")
    rows = json.loads(listed.stdout)["runs"]
    assert [(r["kind"], r["id"], r["trials"]) for r in rows] == [
        ("sweep", folder.name, record["counts"])
    ]
    table = run_dlcli("runs", "--runs-dir", runs, env={"COLUMNS": "250"}).stdout
    assert (
        f"val_loss {number(best['value'])} (trial {best['number']})" in table
        and "2 completed, 1 failed" in table
    )
    inside = json.loads(run_dlcli("runs", "--runs-dir", folder, "--json").stdout)["runs"]
    assert sorted(r["status"] for r in inside) == ["completed", "completed", "failed"]
    compared = json.loads(
        run_dlcli(
            "compare", by_rate[0.003]["run"], by_rate[0.001]["run"], "--runs-dir", folder, "--json"
        ).stdout
    )
    assert {d["key"] for d in compared["differences"]} == {
        "compile.optimizer.learning_rate",
        "name",
    }
    evaluated = cli("evaluate", folder / best["run"], "--split", "val", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    last_epoch = RunFolder(folder / best["run"]).history()[
        -1
    ]  # no early stopping: model.keras is the last epoch
    assert json.loads(evaluated.stdout)["metrics"]["loss"] == pytest.approx(
        last_epoch["val_loss"], rel=1e-3
    )
    shown = run_dlcli("show", folder, env={"COLUMNS": "250"}).stdout
    assert "trials (3)" in shown and f"{best['number']} ★" in shown and "NaN" in shown
    # best.yaml is the best trial's resolved config, under the sweep's name: `dlcli train
    # best.yaml` trains that run again (same config, same seed).
    best_yaml = yaml.safe_load((folder / "best.yaml").read_text())
    trained = yaml.safe_load((folder / best["run"] / "config.yaml").read_text())
    assert best_yaml == {**trained, "name": "reg"} and "sweep" not in best_yaml
    assert (
        best_yaml["compile"]["optimizer"]["learning_rate"]
        == best["params"]["compile.optimizer.learning_rate"]
    )
    assert load_config(folder / "best.yaml").to_dict() == {**trained, "name": "reg"}


@pytest.mark.slow
def test_a_sweep_where_no_trial_completes_exits_1(tmp_path, cli):
    config = deep_update(
        REGRESSION,
        {
            "sweep": {
                "trials": 1,
                "space": {"compile.optimizer.learning_rate": {"choice": [1.0e6, 2.0e6]}},
            }
        },
    )
    runs = tmp_path / "runs"
    result = cli("sweep", write(tmp_path, config), "--runs-dir", runs, "--json")
    assert result.exit_code == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["trials"] == {"failed": 1} and payload["best"] is None
    assert "no trial completed (1 failed); first error: loss became NaN" in payload["error"]
    assert sweep_record(Path(payload["sweep"]))["status"] == "failed"


@pytest.mark.slow
def test_an_interrupted_or_killed_sweep_resumes_and_keeps_its_finished_trials(tmp_path):
    # 60 epochs of 89 steps: a trial trains for a couple of seconds, time to stop it midway.
    config = deep_update(
        REGRESSION,
        {
            "training": {"epochs": 60, "batch_size": 4},
            "sweep": {
                "trials": 2,
                "pruner": "none",
                "space": {"compile.optimizer.learning_rate": {"log_uniform": [3.0e-4, 3.0e-3]}},
            },
        },
    )
    runs = tmp_path / "runs"
    env = {**os.environ, "NO_COLOR": "1"}
    command = [
        sys.executable,
        "-m",
        "dlcli",
        "sweep",
        str(write(tmp_path, config)),
        "--runs-dir",
        str(runs),
    ]
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    folder = wait_for(lambda: next(iter(sweep_folders(runs)), None), what="the sweep folder")
    wait_for(
        lambda: (
            trial_states(folder).get("completed") == 1 and trial_states(folder).get("running") == 1
        ),
        what="trial 0 done and trial 1 running",
    )
    # Freeze trial 1 as soon as it has a run folder, so that however slow or busy the machine,
    # it cannot finish before the sweep passes the Ctrl-C on; it goes on once the signal waits.
    trial = wait_for(lambda: running_pid(folder, "reg-t0001-*"), what="trial 1 started")
    os.kill(trial, signal.SIGSTOP)
    first.send_signal(signal.SIGINT)
    wait_for(
        lambda: signal_pending(trial, signal.SIGINT), what="the sweep passing Ctrl-C on to trial 1"
    )
    os.kill(trial, signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert "dlcli sweep --resume" in err
    record = sweep_record(folder)
    assert record["status"] == "interrupted" and record["counts"] == {
        "completed": 1,
        "interrupted": 1,
    }
    kept, lost = record["trials"]
    assert RunFolder(folder / lost["run"]).record.status == "interrupted"

    # Carry on, then kill -9 the sweep mid-trial: its trial stops with it.
    second = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "sweep", "--resume", str(folder), "--runs-dir", str(runs)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    trial = wait_for(lambda: running_pid(folder, "reg-t0002-*"), what="trial 2 started")
    os.kill(trial, signal.SIGSTOP)
    child = RunFolder(next(folder.glob("reg-t0002-*")))
    second.kill()
    second.communicate(timeout=60)
    # The trial follows its sweep: the kernel sends it SIGTERM when the sweep dies.
    wait_for(lambda: signal_pending(trial, signal.SIGTERM), what="trial 2 told of the kill")
    os.kill(trial, signal.SIGCONT)
    wait_for(
        lambda: child.record.status == "interrupted", timeout=60, what="the orphaned trial to stop"
    )
    assert (
        sweep_record(folder)["status"] == "running"
    )  # as the kill left it; `runs` reads it as killed
    assert (
        json.loads(run_dlcli("runs", "--runs-dir", runs, "--json").stdout)["runs"][0]["status"]
        == "killed"
    )

    third = run_dlcli("sweep", "--resume", folder.name, "--runs-dir", runs, "--json")
    assert third.returncode == 0, third.stderr
    record = sweep_record(folder)
    assert record["status"] == "completed"
    assert record["counts"] == {"completed": 2, "interrupted": 2}
    assert record["trials"][0] == kept  # the finished trial is kept as it was
    assert [t["state"] for t in record["trials"]] == [
        "completed",
        "interrupted",
        "interrupted",
        "completed",
    ]
    assert record["resumes"] == 2
    assert json.loads(third.stdout)["trials"] == record["counts"]


@pytest.mark.slow
def test_a_grid_sweep_resumed_runs_the_point_its_interrupted_trial_lost(tmp_path):
    # Optuna's grid counts a lost trial's point as visited: without queuing it again, the
    # resumed sweep draws among all points and may train a finished one a second time.
    rates = [3.0e-3, 1.0e-3]
    config = deep_update(
        REGRESSION,
        {
            "training": {"epochs": 60, "batch_size": 4},
            "sweep": {
                "sampler": "grid",
                "trials": 2,
                "pruner": "none",
                "space": {"compile.optimizer.learning_rate": {"choice": rates}},
            },
        },
    )
    runs = tmp_path / "runs"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlcli",
            "sweep",
            str(write(tmp_path, config)),
            "--runs-dir",
            str(runs),
        ],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    folder = wait_for(lambda: next(iter(sweep_folders(runs)), None), what="the sweep folder")
    trial = wait_for(lambda: running_pid(folder, "reg-t0001-*"), what="trial 1 started")
    os.kill(trial, signal.SIGSTOP)  # it cannot finish before the Ctrl-C reaches it
    first.send_signal(signal.SIGINT)
    wait_for(lambda: signal_pending(trial, signal.SIGINT), what="Ctrl-C passed on to trial 1")
    os.kill(trial, signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    states = [
        (t["state"], t["params"]["compile.optimizer.learning_rate"])
        for t in sweep_record(folder)["trials"]
    ]
    assert [s for s, _ in states] == ["completed", "interrupted"]

    resumed = run_dlcli("sweep", "--resume", folder, "--runs-dir", runs, "--json")
    assert resumed.returncode == 0, resumed.stderr
    record = sweep_record(folder)
    completed = [
        t["params"]["compile.optimizer.learning_rate"]
        for t in record["trials"]
        if t["state"] == "completed"
    ]
    assert sorted(completed) == sorted(rates)  # each point once: the lost one, not a repeat
    assert record["trials"][2]["params"] == record["trials"][1]["params"]


@pytest.mark.slow
def test_two_sweeps_share_one_sqlite_study(tmp_path):
    config = deep_update(
        REGRESSION,
        {
            "sweep": {
                "trials": 2,
                "sampler": "random",
                "pruner": "none",
                "space": {
                    "compile.optimizer.learning_rate": {"log_uniform": [3.0e-4, 3.0e-3]},
                    "model.layers.0.units": {"choice": [8, 16, 32]},
                },
            }
        },
    )
    path = write(tmp_path, config)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "NO_COLOR": "1"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dlcli",
                "sweep",
                str(path),
                "--storage",
                storage,
                "--runs-dir",
                str(tmp_path / f"machine{i}"),
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    records = [sweep_record(Path(json.loads(out)["sweep"])) for out, _ in outputs]
    for record, (out, _) in zip(records, outputs):
        assert record["counts"] == {"completed": 2}  # each process ran its own two
        assert (
            record["storage"] == storage
            and not (Path(json.loads(out)["sweep"]) / "study.db").exists()
        )
    import optuna

    study = optuna.load_study(study_name="reg", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4  # one study of four
    assert sorted(t.user_attrs["sweep"] for t in study.trials) == sorted(
        2 * [r["id"] for r in records]
    )
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 4, "different draws"
    for record in records:  # each lists the study as it stood at its end, its own trials done
        assert sum(1 for t in record["trials"] if t["here"] and t["state"] == "completed") == 2
