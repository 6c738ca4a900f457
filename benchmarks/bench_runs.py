"""How fast `dlcli runs` and `dlcli show` answer over a runs dir of many runs (no training involved).

Writes N synthetic run folders (default 500; `--runs 10000` for the large case) shaped like
real ones (run.json, metrics.json, config.yaml, history.csv; mostly completed, some failed,
some `running` with a process that is gone, a few half-created; names `<name>-<YYYYMMDD-HHMMSS>`
ten minutes apart, four run names interleaved) into a temporary runs dir, then times:

  - `python -m dlcli --help`                              start-up alone, for reference
  - `python -m dlcli runs --runs-dir TMP --limit 20`      end to end, a fresh process each time
  - `python -m dlcli runs --runs-dir TMP --limit 1 --json`
  - `python -m dlcli show latest --runs-dir TMP`          one run's summary
  - `python -m dlcli schema`                              the config's JSON schema
  - `python -m dlcli runs --runs-dir TMP`                 every run, as a table (reads every folder)
  - `python -m dlcli runs --runs-dir TMP --json`          every run, as JSON
  - `python -m dlcli runs --runs-dir TMP --sort accuracy --limit 20`   (a sort reads every folder)
  - in this process: `dlcli.runs.catalog.list_runs(TMP, limit=20)`, `dlcli.runs.catalog.find_runs(TMP)`,
    and the floor for the latter: reading and parsing every run.json and metrics.json, nothing else

Each figure is the median of --repeats runs after one untimed warm-up (so the files are in
the page cache, as they are for a user listing their runs); the load average before and
after is printed (the machine's other work moves these figures). The exit status is 1 when
the median of a command that reads only what it shows (--help, runs --limit, show latest,
schema) exceeds --max-seconds (default 0.3 s up to 1,000 runs, 1 s above).

    python benchmarks/bench_runs.py
    python benchmarks/bench_runs.py --runs 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A real run's files, trimmed (tiny digits MLP, 3 epochs); each synthetic run varies them.
RUN_JSON = {
    "id": None,
    "name": None,
    "status": "completed",
    "started": None,
    "ended": None,
    "duration_s": None,
    "command": "dlcli train tiny.yaml --runs-dir runs --quiet",
    "seed": 7,
    "pid": None,
    "versions": {
        "dlcli": "0.1.0",
        "keras": "3.15.1",
        "backend": "tensorflow",
        "backend_version": "2.21.0",
        "python": "3.11.7",
    },
    "devices": [{"type": "CPU", "name": "/physical_device:CPU:0"}],
    "runtime": {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": False,
        "steps_per_execution": 18,
        "distribution": "none",
        "deterministic": False,
    },
    "data": {
        "source": "digits",
        "task": "classification",
        "samples": {"train": 1149, "val": 288, "test": 360},
        "classes": 10,
        "input_shape": [64],
        "features": [f"pixel_{i}_{j}" for i in range(8) for j in range(8)],
        "target": None,
        "files": {},
        "fingerprint": "cc5915344aeb57157c473c8d07ece3e3c5588f866b518e3203172496a6888152",
    },
    "parameters": {"total": 2410, "trainable": 2410, "non_trainable": 0},
    "epochs": 3,
    "resumes": [],
}
METRICS_JSON = {
    "train": {"accuracy": 0.5039, "loss": 1.5830},
    "val": {"accuracy": 0.6007, "loss": 1.4088},
    "test": {"accuracy": 0.5583, "loss": 1.5824},
    "best_epoch": 3,
    "epochs_run": 3,
    "samples_per_s": 1098.6,
}
CONFIG_YAML = """name: {name}
seed: 7
data: {{source: digits, validation_split: 0.2, test_split: 0.2, normalize: standard}}
model:
  input_shape: [64]
  layers:
  - {{type: Dense, units: {units}, activation: relu}}
  - {{type: Dense, units: 10, activation: softmax}}
compile: {{optimizer: {{type: adam}}, loss: {{type: sparse_categorical_crossentropy}}, metrics: [{{type: accuracy}}]}}
training: {{epochs: {epochs}, batch_size: 64}}
"""
DEAD_PID = 999_999_999  # above any pid_max: never a live process


def make_runs(runs: Path, count: int, seed: int = 0) -> None:
    """Write `count` run folders into `runs`, shaped like dlcli's own."""
    rng = random.Random(seed)
    start = time.time() - count * 600
    for index in range(count):
        name = rng.choice(["digits-mlp", "wine-csv", "diabetes", "tiny"])
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start + index * 600))
        folder = runs / f"{name}-{stamp}"
        folder.mkdir(parents=True)
        kind = rng.random()
        if kind < 0.01:
            continue  # half-created: the folder and nothing else
        epochs = rng.randint(3, 30)
        epochs_run = epochs if kind < 0.9 else rng.randint(1, epochs)
        record = copy.deepcopy(RUN_JSON)
        started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start + index * 600))
        record.update(id=folder.name, name=name, started=started, epochs=epochs, pid=DEAD_PID)
        (folder / "config.yaml").write_text(
            CONFIG_YAML.format(name=name, units=rng.choice([16, 32, 64, 128]), epochs=epochs)
        )
        history = ["epoch,accuracy,loss,val_accuracy,val_loss,lr,epoch_time_s"]
        history += [
            f"{e},{0.5 + e / 100},{1.5 - e / 50},{0.55 + e / 100},{1.4 - e / 50},0.001,0.1"
            for e in range(1, epochs_run + 1)
        ]
        (folder / "history.csv").write_text("\n".join(history) + "\n")
        if kind < 0.9:
            duration = round(rng.uniform(2, 300), 3)
            ended = time.strftime(
                "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start + index * 600 + duration)
            )
            record.update(status="completed", ended=ended, duration_s=duration)
            metrics = copy.deepcopy(METRICS_JSON)
            for split in ("train", "val", "test"):
                metrics[split] = {
                    "accuracy": rng.uniform(0.5, 0.99),
                    "loss": rng.uniform(0.05, 2.0),
                }
            metrics.update(best_epoch=rng.randint(1, epochs), epochs_run=epochs)
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
        elif kind < 0.95:
            record.update(
                status="failed",
                ended=started,
                duration_s=1.0,
                error="loss became NaN/inf at epoch 2",
            )
        else:
            record.update(status="running")  # its process (DEAD_PID) is gone: `killed`
        (folder / "run.json").write_text(json.dumps(record, indent=2))


def time_command(args: list[str], repeats: int) -> list[float]:
    env = {**os.environ, "NO_COLOR": "1"}
    times = []
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "dlcli", *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(
                f"dlcli {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        if attempt:  # the first run warms the page cache and .pyc files
            times.append(elapsed)
    return times


def time_call(call, repeats: int) -> list[float]:
    """Seconds per call of `call()`, after one untimed call."""
    times = []
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        call()
        elapsed = time.perf_counter() - started
        if attempt:
            times.append(elapsed)
    return times


def read_every_json(runs: Path) -> int:
    """The floor of a full listing: every run.json and metrics.json read and parsed, nothing else."""
    parsed = 0
    with os.scandir(runs) as entries:
        folders = [entry.path for entry in entries if entry.is_dir()]
    for folder in folders:
        for name in ("run.json", "metrics.json"):
            try:
                with open(os.path.join(folder, name), "rb") as handle:
                    json.loads(handle.read())
                parsed += 1
            except OSError:
                pass
    return parsed


def load() -> str:
    try:
        return (
            "load average "
            + ", ".join(f"{value:.2f}" for value in os.getloadavg())
            + f" on {os.cpu_count()} CPUs"
        )
    except OSError:
        return "load average unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=500, help="how many run folders to create (default 500)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="fail when a command that reads only what it shows (--help, runs --limit, show latest, "
        "schema) is slower (default 0.3 up to 1,000 runs, else 1)",
    )
    options = parser.parse_args()
    limit = (
        options.max_seconds
        if options.max_seconds is not None
        else (0.3 if options.runs <= 1000 else 1.0)
    )

    with tempfile.TemporaryDirectory(prefix="dlcli-bench-runs-") as tmp:
        runs = Path(tmp) / "runs"
        started = time.perf_counter()
        make_runs(runs, options.runs)
        print(
            f"{options.runs} run folders in {runs} (written in {time.perf_counter() - started:.1f} s); "
            f"median of {options.repeats} (after one warm-up)"
        )
        print(f"before: {load()}")
        where = ["--runs-dir", str(runs)]
        gated = {
            "python -m dlcli --help": time_command(["--help"], options.repeats),
            "python -m dlcli runs --limit 20": time_command(
                ["runs", *where, "--limit", "20"], options.repeats
            ),
            "python -m dlcli runs --limit 1 --json": time_command(
                ["runs", *where, "--limit", "1", "--json"], options.repeats
            ),
            "python -m dlcli show latest": time_command(
                ["show", "latest", *where], options.repeats
            ),
            "python -m dlcli schema": time_command(["schema"], options.repeats),
        }
        every = {
            "python -m dlcli runs": time_command(["runs", *where], options.repeats),
            "python -m dlcli runs --json": time_command(
                ["runs", *where, "--json"], options.repeats
            ),
            "python -m dlcli runs --sort accuracy --limit 20": time_command(
                ["runs", *where, "--sort", "accuracy", "--limit", "20"], options.repeats
            ),
        }
        from dlcli.runs import catalog

        shown = len(catalog.list_runs(runs, limit=20))
        listed = len(catalog.find_runs(runs))
        library = {
            "catalog.list_runs(limit=20), in-process": time_call(
                lambda: catalog.list_runs(runs, limit=20), options.repeats
            ),
            "catalog.find_runs(), in-process": time_call(
                lambda: catalog.find_runs(runs), options.repeats
            ),
            "read + json.loads every run.json, metrics.json": time_call(
                lambda: read_every_json(runs), options.repeats
            ),
        }
        print(f"after:  {load()}")
        figures = {**gated, **every, **library}
        width = max(map(len, figures))
        for label, times in figures.items():
            per_run = (
                f"   {statistics.median(times) / options.runs * 1e6:5.0f} us/run"
                if label in library
                else ""
            )
            print(
                f"  {label:<{width}}  median {statistics.median(times):.3f} s   "
                f"(min {min(times):.3f}, max {max(times):.3f}){per_run}"
            )
        assert shown == min(20, options.runs) and listed == options.runs, (shown, listed)
        slow = {
            label: statistics.median(times)
            for label, times in gated.items()
            if statistics.median(times) > limit
        }
    if slow:
        print(
            "FAIL: "
            + "; ".join(f"{label} took {seconds:.3f} s" for label, seconds in slow.items())
            + f" (> {limit} s)"
        )
        return 1
    print(f"ok: every command that reads only what it shows within {limit} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
