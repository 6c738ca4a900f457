"""Wall time of `dlcli cv --parallel 2` against `--parallel 1` (folds one after another).

The workload is a config (default: configs/census_table.yaml) cut to --epochs epochs,
cross-validated with --folds folds. For each repeat, in alternating order, one run of each:

  - `dlcli cv CONFIG --parallel 1`   one fold at a time, on every core
  - `dlcli cv CONFIG --parallel 2`   two at a time, each pinned to its half of the cores

Both cut the same folds (same seed) and train the same epochs: the ratio is what running
folds side by side buys on this machine. Each side starts with an empty JAX compilation
cache of its own. It prints each wall time, the per-repeat ratio and the median ratio.

    python benchmarks/bench_cv.py
    python benchmarks/bench_cv.py --config configs/digits_mlp.yaml --folds 4 --epochs 3 --repeats 3
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
CONFIG = ROOT / "configs" / "census_table.yaml"


def timed_cv(config: Path, folds: int, parallel: int, epochs: int, work: Path) -> float:
    """Seconds `dlcli cv` takes, end to end, as a user runs it."""
    env = {**os.environ, "DLCLI_COMPILE_CACHE": str(work / "cache")}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "cv",
            str(config),
            "--folds",
            str(folds),
            "--parallel",
            str(parallel),
            "--set",
            f"training.epochs={epochs}",
            "--runs-dir",
            str(work / "runs"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    took = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"dlcli cv --parallel {parallel} failed ({result.returncode}):\n{result.stderr}")
    counts = json.loads(result.stdout)["counts"]
    if counts != {"completed": folds}:
        sys.exit(f"dlcli cv --parallel {parallel}: folds {counts}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        f"dlcli cv {args.config.name} --folds {args.folds}, {args.epochs} epochs, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    ratios = []
    for repeat in range(args.repeats):
        times = {}
        order = (1, 2) if repeat % 2 == 0 else (2, 1)
        for parallel in order:
            with tempfile.TemporaryDirectory() as work:
                times[parallel] = timed_cv(
                    args.config, args.folds, parallel, args.epochs, Path(work)
                )
        ratios.append(times[2] / times[1])
        print(
            f"repeat {repeat + 1}: --parallel 1 {times[1]:.1f} s, --parallel 2 {times[2]:.1f} s, "
            f"ratio {ratios[-1]:.2f}"
        )
    print(
        f"median ratio (parallel 2 / parallel 1): {statistics.median(ratios):.2f}; "
        f"load average after {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
