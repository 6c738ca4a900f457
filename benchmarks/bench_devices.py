"""Training speed on two logical CPU devices against one, on TensorFlow and JAX; and on JAX,
two processes on 127.0.0.1 (`--num-processes 2`, one CPU device each) against one.

`DLCLI_CPU_DEVICES=2` splits the CPU into two devices, so `distribution: auto` runs
MirroredStrategy (TensorFlow) or DataParallel (JAX). On one machine's CPU that is no
speed-up: what it shows is the cost of the distribution machinery (replicated variables,
split batches, gradient all-reduce; on TensorFlow also one step per execution). The figure
is `samples_per_s` from the run's metrics.json (training samples over fit time), from
fresh processes, one device and two alternating, after one untimed pair. Two processes share
the machine's two cores, and every step's gradients cross the loopback through Gloo.

    python benchmarks/bench_devices.py                    # both backends, 3 pairs each
    python benchmarks/bench_devices.py --backend jax --repeats 5
    python benchmarks/bench_devices.py --backend processes
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_train import busy_cpu_seconds, make_npz

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "large_mlp.yaml"


def samples_per_s(backend: str, devices: int, data: Path, runs: Path) -> tuple[float, float]:
    """(samples/s of one training run, other processes' CPU seconds meanwhile)."""
    env = {**os.environ, "DLCLI_CPU_DEVICES": str(devices)}
    busy = busy_cpu_seconds()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            str(CONFIG),
            "--json",
            "--quiet",
            "--runs-dir",
            str(runs),
            "--set",
            f"data.path={data}",
            "--set",
            f"runtime.backend={backend}",
            "--set",
            "training.epochs=3",
            "--set",
            "output.plots=false",
            "--set",
            "output.tensorboard=false",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(
            f"dlcli train failed ({backend}, {devices} devices):\n{out.stderr[-3000:]}"
        )
    result = json.loads(out.stdout)
    record = json.loads((Path(result["run"]) / "run.json").read_text())
    assert record["runtime"]["replicas"] == devices, record["runtime"]
    other = (busy_cpu_seconds() - busy) if busy is not None else float("nan")
    return float(result["samples_per_s"]), other


def two_processes_samples_per_s(data: Path, runs: Path) -> tuple[float, float]:
    """(samples/s of one two-process JAX run on 127.0.0.1, as process 0 reports it, nan)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dlcli",
                "train",
                str(CONFIG),
                "--json",
                "--quiet",
                "--runs-dir",
                str(runs),
                "--set",
                f"data.path={data}",
                "--set",
                "runtime.backend=jax",
                "--set",
                "training.epochs=3",
                "--set",
                "output.plots=false",
                "--set",
                "output.tensorboard=false",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate() for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(
            f"dlcli train failed (2 processes):\n{outs[0][1][-3000:]}\n{outs[1][1][-3000:]}"
        )
    return float(json.loads(outs[0][0])["samples_per_s"]), float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=["tensorflow", "jax", "processes", "all"], default="all"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    backends = ["tensorflow", "jax", "processes"] if args.backend == "all" else [args.backend]
    with tempfile.TemporaryDirectory() as folder:
        data = make_npz(Path(folder) / "large.npz")
        runs = Path(folder) / "runs"
        print(
            f"{'backend':<11} {'1 device/s':>11} {'2 devices/s':>12} {'ratio':>6}  (median of {args.repeats} pairs; "
            "processes: 2 JAX processes of one device each)"
        )
        for backend in backends:
            engine = "jax" if backend == "processes" else backend
            samples_per_s(engine, 1, data, runs)  # warm the file cache and the imports
            one, two = [], []
            for _ in range(args.repeats):
                one.append(samples_per_s(engine, 1, data, runs)[0])
                two.append(
                    two_processes_samples_per_s(data, runs)[0]
                    if backend == "processes"
                    else samples_per_s(engine, 2, data, runs)[0]
                )
            ratios = [b / a for a, b in zip(one, two)]
            print(
                f"{backend:<11} {statistics.median(one):>11,.0f} {statistics.median(two):>12,.0f} "
                f"{statistics.median(ratios):>6.2f}  pairs: {', '.join(f'{r:.2f}' for r in ratios)}"
            )


if __name__ == "__main__":
    main()
