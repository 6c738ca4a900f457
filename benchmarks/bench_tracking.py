"""What tracking a run in MLflow costs: `dlcli train` of the digits MLP for 20 epochs with
`output.mlflow` pointed at a local `mlflow server`, against the same command without it.

The server is started here on 127.0.0.1 (a free port, its own SQLite store and artifact
folder in a temporary directory) and stopped at the end. Each repeat runs both commands, in
alternating order, each in a fresh process, after one warm-up run of each (not counted:
it fills JAX's compilation cache, which both then share); it reports each end-to-end wall time, the ratio
per pair and the median ratio, and checks that every tracked run reached the server.

    python benchmarks/bench_tracking.py                  # 5 pairs, 20 epochs
    python benchmarks/bench_tracking.py --repeats 3 --epochs 10
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
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "digits_mlp.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
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
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the mlflow server did not start")


def train(runs: Path, epochs: int, uri: str | None) -> tuple[float, dict]:
    command = [
        sys.executable,
        "-m",
        "dlcli",
        "train",
        str(CONFIG),
        "--runs-dir",
        str(runs),
        "--set",
        f"training.epochs={epochs}",
        "--set",
        "training.early_stopping=null",
        "--json",
        "--quiet",
    ]
    if uri:
        command += ["--set", f"output.mlflow.tracking_uri={uri}"]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    run = Path(json.loads(done.stdout)["run"])
    return wall, json.loads((run / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    (work / "server").mkdir()
    server, url = start_server(work / "server")
    print(f"digits MLP, {args.epochs} epochs, {os.cpu_count()} cores, mlflow server at {url}")
    ratios = []
    try:
        for side in ("plain", "tracked"):  # warm-up, not counted: JAX's compilation cache fills
            train(work / side, args.epochs, url if side == "tracked" else None)
        for repeat in range(args.repeats):
            order = ("plain", "tracked") if repeat % 2 == 0 else ("tracked", "plain")
            walls = {}
            for side in order:
                wall, record = train(work / side, args.epochs, url if side == "tracked" else None)
                walls[side] = wall
                if side == "tracked":
                    tracked = record.get("mlflow") or {}
                    assert tracked.get("run_id") and "error" not in tracked, tracked
            ratio = walls["tracked"] / walls["plain"]
            ratios.append(ratio)
            print(
                f"repeat {repeat + 1}: without {walls['plain']:6.2f} s   with tracking "
                f"{walls['tracked']:6.2f} s   ratio {ratio:.3f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"median: with tracking / without = {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
