"""What the baselines cost: `dlcli train` end to end with `output.baselines: auto` against
`output.baselines: none`, on the census example (configs/census_table.yaml: a raw table,
3,840 training rows, text categories).

`auto` fits and scores the majority baseline and scikit-learn's gradient boosting on the
run's splits after the model is scored (`dlcli.training.baselines`); `none` does neither.
Each side runs as a fresh process (`python -m dlcli train ... --quiet`), the two
alternating (auto, none, then none, auto, ...) after one untimed pair that warms the OS
file cache and the JAX compilation cache both sides share (in a temporary folder). Printed:
each run's wall time (process start to exit), the auto runs' `timings.baselines_s`, each
side's median, the median of the per-pair ratios auto / none, and the test accuracy of the
model and of each baseline.

The gate (exit status 1): the median overhead (ratio - 1) at most --max-overhead (10%).

    python benchmarks/bench_baselines.py                 # 4 pairs (~6 min on 2 busy cores)
    python benchmarks/bench_baselines.py --repeats 6 --json baselines.json
    python benchmarks/bench_baselines.py --config configs/digits_mlp.yaml   # another config
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
MAX_OVERHEAD = 0.10


def train(config: Path, mode: str, runs: Path, cache: Path) -> tuple[float, Path]:
    """One `dlcli train` of `config` with `output.baselines: mode`: its wall time and run
    folder."""
    env = {**os.environ, "DLCLI_COMPILE_CACHE": str(cache)}
    command = [sys.executable, "-m", "dlcli", "train", str(config), "--quiet"]
    command += ["--set", f"output.baselines={mode}", "--runs-dir", str(runs)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return seconds, Path(result.stdout.strip().splitlines()[-1])


def read(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="timed pairs (default 4)")
    parser.add_argument("--max-overhead", type=float, default=MAX_OVERHEAD)
    parser.add_argument("--config", type=Path, default=CONFIG, help="default: census")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"auto": [], "none": []}
    baselines_s: list[float] = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-baselines-") as tmp:
        runs, cache = Path(tmp) / "runs", Path(tmp) / "jax-cache"
        for mode in ("auto", "none"):  # untimed: the file cache and the compilation cache
            train(args.config, mode, runs, cache)
        last = None
        for repeat in range(args.repeats):
            order = ("auto", "none") if repeat % 2 == 0 else ("none", "auto")
            for mode in order:
                seconds, run = train(args.config, mode, runs, cache)
                times[mode].append(seconds)
                if mode == "auto":
                    baselines_s.append(read(run, "run.json")["timings"]["baselines_s"])
                    last = read(run, "metrics.json")
            print(
                f"pair {repeat + 1}: auto {times['auto'][-1]:.1f} s (baselines "
                f"{baselines_s[-1]:.1f} s), none {times['none'][-1]:.1f} s",
                flush=True,
            )
    ratios = [a / b for a, b in zip(times["auto"], times["none"])]
    overhead = statistics.median(ratios) - 1
    print(
        f"\n{args.config.name} ({args.repeats} pairs, load average {load:.1f} at the start on "
        f"{os.cpu_count()} cores)"
    )
    for mode in ("auto", "none"):
        print(f"  output.baselines: {mode:<5} median {statistics.median(times[mode]):.1f} s")
    print(f"  timings.baselines_s       median {statistics.median(baselines_s):.2f} s")
    print(
        f"  overhead (median of auto / none - 1): {overhead:+.1%} (limit {args.max_overhead:.0%})"
    )
    if last is not None:
        shown = ", ".join(
            f"{name} {scores.get('accuracy', float('nan')):.4f}"
            for name, scores in last["baselines"].items()
        )
        print(f"  test accuracy: model {last['test']['accuracy']:.4f}, {shown}")
    if args.json:
        figures = {"times": times, "baselines_s": baselines_s, "ratios": ratios}
        args.json.write_text(json.dumps({**figures, "overhead": overhead}, indent=2) + "\n")
    if overhead > args.max_overhead:
        sys.exit(f"FAIL: the baselines cost {overhead:.1%} > {args.max_overhead:.0%}")
    print("OK")


if __name__ == "__main__":
    main()
