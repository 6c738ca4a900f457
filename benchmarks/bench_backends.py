"""Which Keras backend trains which model fastest on this machine: the evidence behind
`runtime.backend: auto` (dlcli.runtime.backend.choose_backend).

Each workload is trained by `dlcli train` in a fresh process on every backend installed
(`--set runtime.backend=...`), with dlcli's defaults otherwise, `--repeats` times in turn
(tensorflow, jax, torch, tensorflow, ...). Per run: the whole process's wall time, the
first epoch (compilation included), the median of the later epochs (history.csv's
`epoch_time_s`), and the test accuracy. The data is generated from fixed seeds into a
temporary folder (nothing is downloaded).

    python benchmarks/bench_backends.py                          # every workload, 2 repeats (~10 min on 2 cores)
    python benchmarks/bench_backends.py --workload cnn --workload lstm --repeats 3
    python benchmarks/bench_backends.py --backends tensorflow,jax --json backends.json
    python benchmarks/bench_backends.py --cache warm     # JAX's compilation cache filled first

Workloads (the model families a config is made of):
    digits   scikit-learn digits, MLP 128-Dropout-64, 20 epochs x batch 32 (start-up bound)
    seed     60,000 x 784 (the classic MNIST MLP's shape), 128-64-10, 5 epochs x batch 32
    wide     20,000 x 256, 1024-1024-10, 5 epochs x batch 256 (matrix products dominate)
    table    configs/data/census.csv behind dlcli's table encoding, 64-Dropout-32, 15 epochs x 64
    cnn      12,000 28x28x1 images, Conv2D 32 - MaxPool - Conv2D 64 - MaxPool - Dense, 4 epochs x 64
    lstm     8,000 sequences of 40 x 16, LSTM 64 - Dense, 4 epochs x 64
    gru      8,000 sequences of 40 x 16, GRU 64 - Dense, 4 epochs x 64
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BACKENDS = ("tensorflow", "jax", "torch")


def _blobs(n: int, shape: tuple, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable data: each class a mixture of 3 Gaussian blobs (fixed seed)."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    centres = rng.normal(size=(classes * 3, d)) * 0.3
    y = rng.integers(0, classes, size=n)
    x = centres[y * 3 + rng.integers(0, 3, size=n)] + rng.normal(size=(n, d))
    return x.reshape((n, *shape)).astype("float32"), y.astype("int64")


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images of scikit-learn's digits, scaled up, shifted and with noise."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits, labels = load_digits(return_X_y=True)
    pick = rng.integers(0, len(digits), size=n)
    big = np.kron(digits[pick].reshape(n, 8, 8), np.ones((3, 3)))  # 24 x 24
    x = np.zeros((n, 28, 28), dtype="float32")
    dx, dy = rng.integers(0, 5, size=n), rng.integers(0, 5, size=n)
    for i in range(n):
        x[i, dy[i] : dy[i] + 24, dx[i] : dx[i] + 24] = big[i]
    x += rng.normal(scale=2.0, size=x.shape).astype("float32")
    return x[..., None] / 16.0, labels[pick].astype("int64")


def _sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sine waves of 40 steps x 16 channels; the class is the frequency band."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, size=n)
    t = np.arange(40)[None, :, None]
    freq = (0.1 + 0.08 * y)[:, None, None] * (1 + 0.1 * rng.normal(size=(n, 1, 16)))
    x = np.sin(freq * t + rng.uniform(0, 6.3, size=(n, 1, 16))) + 0.5 * rng.normal(size=(n, 40, 16))
    return x.astype("float32"), y.astype("int64")


def _config(
    name: str, data: dict, layers: list, epochs: int, batch: int, normalize="standard"
) -> dict:
    return {
        "name": f"bench-{name}",
        "seed": 42,
        "data": {
            **data,
            "validation_split": 0.1,
            "test_split": 0.1,
            **({"normalize": normalize} if normalize else {}),
        },
        "model": {"layers": layers},
        "compile": {"optimizer": "adam", "metrics": ["accuracy"]},
        "training": {"epochs": epochs, "batch_size": batch},
    }


def workloads(folder: Path) -> dict[str, Path]:
    """Write each workload's data and config into `folder`; {name: config path}."""

    def npz(name, x, y):
        path = folder / f"{name}.npz"
        np.savez(path, x_train=x, y_train=y)
        return {"source": "npz", "path": str(path)}

    dense = lambda units, **kw: {"type": "Dense", "units": units, "activation": "relu", **kw}
    out = {"type": "Dense", "activation": "softmax"}
    table = yaml.safe_load((ROOT / "configs" / "census_table.yaml").read_text())
    table["data"]["path"] = str(ROOT / "configs" / "data" / "census.csv")
    table["training"] = {"epochs": 15, "batch_size": 64}
    table["name"] = "bench-table"
    configs = {
        "digits": _config(
            "digits",
            {"source": "digits"},
            [dense(128), {"type": "Dropout", "rate": 0.2}, dense(64), out],
            20,
            32,
        ),
        "seed": _config(
            "seed", npz("seed", *_blobs(60_000, (784,), 10, 0)), [dense(128), dense(64), out], 5, 32
        ),
        "wide": _config(
            "wide",
            npz("wide", *_blobs(20_000, (256,), 10, 1)),
            [dense(1024), dense(1024), out],
            5,
            256,
        ),
        "table": table,
        "cnn": _config(
            "cnn",
            npz("cnn", *_images(12_000, 2)),
            [
                {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
                {"type": "MaxPooling2D"},
                {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
                {"type": "MaxPooling2D"},
                {"type": "Flatten"},
                out,
            ],
            4,
            64,
            normalize=None,
        ),
        "lstm": _config(
            "lstm",
            npz("lstm", *_sequences(8_000, 3)),
            [{"type": "LSTM", "units": 64}, out],
            4,
            64,
            normalize=None,
        ),
        "gru": _config(
            "gru",
            npz("gru", *_sequences(8_000, 3)),
            [{"type": "GRU", "units": 64}, out],
            4,
            64,
            normalize=None,
        ),
    }
    paths = {}
    for name, config in configs.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


def train(config: Path, backend: str, runs: Path, cache: Path) -> dict:
    """One `dlcli train`; JAX's compilation cache in `cache` (a fresh folder: a first run)."""
    cmd = [
        sys.executable,
        "-m",
        "dlcli",
        "train",
        str(config),
        "--quiet",
        "--runs-dir",
        str(runs),
        "--set",
        f"runtime.backend={backend}",
        "--set",
        "output.plots=false",
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DLCLI_COMPILE_CACHE": str(cache)},
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}")
    run = Path(proc.stdout.strip().splitlines()[-1])
    with open(run / "history.csv") as handle:
        epochs = [float(row["epoch_time_s"]) for row in csv.DictReader(handle)]
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "wall_s": wall,
        "first_epoch_s": epochs[0],
        "epoch_s": statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0],
        "accuracy": metrics["test"].get("accuracy"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload", action="append", help="one of the workloads (default: all); repeatable"
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated (default: those installed)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--cache",
        choices=("cold", "warm"),
        default="cold",
        help="JAX's compilation cache: empty for every run (a first run of a config, the "
        "default) or filled by an untimed run first (a config run again)",
    )
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if importlib.util.find_spec(b) is not None]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        configs = workloads(folder)
        names = args.workload or list(configs)
        for name in names:
            for repeat in range(args.repeats):
                for backend in backends:
                    cache = folder / (
                        "cache" if args.cache == "warm" else f"cache-{name}-{backend}-{repeat}"
                    )
                    if args.cache == "warm" and repeat == 0:  # untimed: fills the cache
                        train(configs[name], backend, folder / "runs", cache)
                    row = train(configs[name], backend, folder / "runs", cache)
                    results.setdefault(name, {}).setdefault(backend, []).append(row)
                    print(
                        f"  {name:7s} {backend:10s} #{repeat + 1}: wall {row['wall_s']:6.2f} s  first epoch "
                        f"{row['first_epoch_s']:6.2f} s  later epochs {row['epoch_s']:6.3f} s  "
                        f"acc {row['accuracy']:.4f}",
                        flush=True,
                    )
    print(
        f"\n{'workload':8s} {'backend':10s} {'wall s':>7s} {'1st ep s':>8s} {'epoch s':>8s} {'vs best':>7s} {'acc':>6s}"
    )
    for name in names:
        medians = {
            b: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            for b, rows in results[name].items()
        }
        best = min(m["wall_s"] for m in medians.values())
        for backend, m in medians.items():
            print(
                f"{name:8s} {backend:10s} {m['wall_s']:7.2f} {m['first_epoch_s']:8.2f} {m['epoch_s']:8.3f} "
                f"{m['wall_s'] / best:7.2f} {m['accuracy']:6.4f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
