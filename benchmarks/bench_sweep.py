"""Trials per minute of `dlcli sweep` against a shell loop of `dlcli train --set ...` doing the same trials.

The workload is configs/digits_sweep.yaml (the digits MLP) cut to --epochs epochs, with the
random sampler (its draws do not depend on how many trials run at once, so every side
trains the same values) and no pruning (every trial trains every epoch). In one run of
this script, for each repeat:

  - `dlcli sweep --parallel 1`        one trial at a time
  - `dlcli sweep --parallel 2`        two at a time, each pinned to its half of the cores
  - the loop                           `dlcli train CONFIG --set KEY=VALUE ...` per trial, one
                                       after the other, as a shell `for` loop would (the
                                       values are the ones the sweep drew)

Each side starts with an empty JAX compilation cache of its own (as a first sweep does), so
none reuses the programs another compiled. It prints the wall time of each, trials per minute, the ratio to the loop, and the share of
time spent outside training: 1 - (sum of the trials' fit seconds, from their history.csv)
/ (wall seconds x trials at once). Each trial is its own process, so the share is mostly
Python, Keras and the backend starting, the data loading and the final evaluation.

    python benchmarks/bench_sweep.py
    python benchmarks/bench_sweep.py --trials 8 --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "digits_sweep.yaml"


def dlcli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DLCLI_COMPILE_CACHE": str(cache)}
    result = subprocess.run(
        [sys.executable, "-m", "dlcli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    if result.returncode != 0:
        sys.exit(f"dlcli {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def fit_seconds(run: Path) -> float:
    lines = (run / "history.csv").read_text().splitlines()
    column = lines[0].split(",").index("epoch_time_s")
    return sum(float(line.split(",")[column]) for line in lines[1:])


def sweep(tmp: Path, trials: int, parallel: int, epochs: int) -> tuple[float, list[dict], float]:
    runs = tmp / f"sweep-p{parallel}-{time.time_ns()}"
    started = time.perf_counter()
    out = dlcli(
        "sweep",
        str(CONFIG),
        "--trials",
        str(trials),
        "--parallel",
        str(parallel),
        "--set",
        f"training.epochs={epochs}",
        "--set",
        "sweep.sampler=random",
        "--set",
        "sweep.pruner=none",
        "--runs-dir",
        str(runs),
        "--json",
        cache=runs / "jax-cache",
    )
    wall = time.perf_counter() - started
    folder = Path(json.loads(out.stdout)["sweep"])
    record = json.loads((folder / "sweep.json").read_text())
    fit = sum(fit_seconds(folder / t["run"]) for t in record["trials"])
    return wall, record["trials"], fit


def loop(tmp: Path, trials: list[dict], epochs: int) -> tuple[float, float]:
    from dlcli.tuning.trials import override

    runs = tmp / f"loop-{time.time_ns()}"
    cache = runs / "jax-cache"
    fit = 0.0
    started = time.perf_counter()
    for trial in trials:
        sets = [
            part
            for key, value in trial["params"].items()
            for part in ("--set", override(key, value))
        ]
        out = dlcli(
            "train",
            str(CONFIG),
            "--set",
            f"training.epochs={epochs}",
            *sets,
            "--runs-dir",
            str(runs),
            "--quiet",
            cache=cache,
        )
        fit += fit_seconds(Path(out.stdout.strip().splitlines()[-1]))
    return time.perf_counter() - started, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    figures: dict[str, list[tuple[float, float, int]]] = {
        "sweep --parallel 1": [],
        "sweep --parallel 2": [],
        "shell loop": [],
    }
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-sweep-") as tmp:
        for _ in range(args.repeats):
            wall1, trials, fit1 = sweep(Path(tmp), args.trials, 1, args.epochs)
            figures["sweep --parallel 1"].append((wall1, fit1, 1))
            if cores >= 2:
                wall2, _, fit2 = sweep(Path(tmp), args.trials, 2, args.epochs)
                figures["sweep --parallel 2"].append((wall2, fit2, 2))
            wall_loop, fit_loop = loop(Path(tmp), trials, args.epochs)
            figures["shell loop"].append((wall_loop, fit_loop, 1))
    loop_wall = statistics.median(w for w, _, _ in figures["shell loop"])
    print(
        f"{args.trials} trials of configs/digits_sweep.yaml, {args.epochs} epochs each, {cores} cores, "
        f"median of {args.repeats}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'':22} {'wall s':>8} {'trials/min':>11} {'vs loop':>8} {'outside training':>17}")
    for name, rows in figures.items():
        if not rows:
            continue
        wall = statistics.median(w for w, _, _ in rows)
        outside = statistics.median(1 - fit / (w * k) for w, fit, k in rows)
        print(
            f"{name:22} {wall:8.1f} {60 * args.trials / wall:11.1f} {wall / loop_wall:7.2f}x {outside:16.0%}"
        )


if __name__ == "__main__":
    main()
