"""Peak memory and speed of `dlcli train` with `data.streaming` on a CSV far larger than the
memory the run may take, against the same kind of data held in memory.

Two CSVs are generated, with a fixed seed, into a folder given on the command line (never
into the repository): ROWS x 64 columns (63 float features written with about 6 significant
digits, an integer `label` 0..9, a header; `bench_tables.write_csv`: 10,000,000 rows are
about 5 GB), and the same at MEMORY_ROWS rows. Then each run is a fresh `dlcli train`
process, one epoch of a small MLP (64 ReLU units, 10 outputs; batch 1024; 10 % validation,
10 % test):

    streamed   ROWS rows, data.streaming: true
    streamed   MEMORY_ROWS rows, data.streaming: true (peak memory should not depend on size)
    memory     MEMORY_ROWS rows, data.streaming: false (the file read whole)

Figures per run: the process's peak RSS (Linux's VmHWM, polled every 20 ms from
/proc/<pid>/status while it runs: dlcli ends with os._exit, so the child cannot report it
itself), the wall time from process start to exit, and `samples_per_s` from the run's
result (training samples per second of `fit`, reading the file included when streamed).

The gate (exit status 1): the streamed run of ROWS rows peaks under --max-peak-gb (2 GB).

    python benchmarks/bench_streaming.py --dir /tmp/bench                    # 10M rows streamed, 1M in memory
    python benchmarks/bench_streaming.py --dir /tmp/bench --rows 200000 --memory-rows 50000   # a quick check
    python benchmarks/bench_streaming.py --dir /tmp/bench --backend jax --json figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_tables import write_csv

POLL_S = 0.02


def config(path: Path, streaming: bool, backend: str, name: str) -> dict:
    return {
        "name": name,
        "seed": 0,
        "data": {
            "source": "csv",
            "path": str(path),
            "target": "label",
            "streaming": streaming,
            "validation_split": 0.1,
            "test_split": 0.1,
        },
        "model": {
            "layers": [
                {"type": "Dense", "units": 64, "activation": "relu"},
                {"type": "Dense", "units": 10},
            ]
        },
        "compile": {
            "optimizer": "adam",
            "loss": {"type": "sparse_categorical_crossentropy", "from_logits": True},
            "metrics": ["accuracy"],
        },
        "training": {"epochs": 1, "batch_size": 1024},
        "runtime": {"backend": backend},
        "output": {"tensorboard": False, "plots": False},
    }


def vm_hwm(pid: int) -> int | None:
    """The peak RSS of a running process, bytes (None once it is gone, or without /proc)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run(cmd: list[str]) -> tuple[float, int, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS bytes, the finished process) of a command."""
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    peak = [0]

    def poll():
        while process.poll() is None:
            peak[0] = max(peak[0], vm_hwm(process.pid) or 0)
            time.sleep(POLL_S)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = process.communicate()
    watcher.join()
    return (
        time.perf_counter() - started,
        peak[0],
        subprocess.CompletedProcess(cmd, process.returncode, out, err),
    )


def train(folder: Path, data: Path, streaming: bool, backend: str, name: str) -> dict:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config(data, streaming, backend, name), sort_keys=False))
    seconds, peak, done = run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            str(path),
            "--runs-dir",
            str(folder / "runs"),
            "--json",
            "--quiet",
        ]
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout)
    record = json.loads((Path(result["run"]) / "run.json").read_text())
    return {
        "run": name,
        "rows": int(data.stem.split("-")[1]),
        "streaming": record["data"]["streaming"],
        "file_mb": data.stat().st_size / 1e6,
        "peak_mb": peak / 1e6,
        "wall_s": seconds,
        "samples_per_s": result["samples_per_s"],
        "test_accuracy": result["test"]["accuracy"],
        "load_s": record.get("timings", {}).get("load_s"),
    }


def data_file(folder: Path, rows: int) -> Path:
    path = folder / f"table-{rows}.csv"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".part")
        write_csv(partial, rows)
        partial.rename(path)
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", required=True, type=Path, help="where the CSVs and runs go (not the repository)"
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the streamed file")
    parser.add_argument(
        "--memory-rows", type=int, default=1_000_000, help="rows of the file also read in memory"
    )
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax", "torch"])
    parser.add_argument(
        "--max-peak-gb", type=float, default=2.0, help="gate: the large streamed run's peak RSS"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    large, small = data_file(folder, args.rows), data_file(folder, args.memory_rows)
    rows = [
        train(folder, large, True, args.backend, f"streamed-{args.rows}"),
        train(folder, small, True, args.backend, f"streamed-{args.memory_rows}"),
        train(folder, small, False, args.backend, f"memory-{args.memory_rows}"),
    ]
    print(
        f"{'run':<20} {'rows':>11} {'file MB':>8} {'peak MB':>8} {'wall s':>7} {'samples/s':>10} {'load s':>7} {'test acc':>8}"
    )
    print("-" * 86)
    for r in rows:
        print(
            f"{r['run']:<20} {r['rows']:>11,} {r['file_mb']:>8,.0f} {r['peak_mb']:>8,.0f} {r['wall_s']:>7.1f} "
            f"{r['samples_per_s']:>10,.0f} {r['load_s'] or 0:>7.1f} {r['test_accuracy']:>8.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    limit = args.max_peak_gb * 1e9
    if rows[0]["peak_mb"] * 1e6 > limit:
        print(
            f"FAIL: the streamed run of {args.rows:,} rows peaked at {rows[0]['peak_mb']:,.0f} MB, "
            f"over {limit / 1e6:,.0f} MB"
        )
        return 1
    print(
        f"OK: the streamed run of {args.rows:,} rows peaked at {rows[0]['peak_mb']:,.0f} MB "
        f"(limit {limit / 1e6:,.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
