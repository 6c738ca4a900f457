"""dlcli's training speed on a GPU: seconds per epoch, samples/s and achieved TFLOP/s.

Two workloads, each trained by `dlcli train` in a fresh process on synthetic data of the
right shape (nothing is downloaded):

* `seed`: the classic MNIST MLP, 784 -> 128 relu -> 64 relu -> 10 softmax, 60,000 samples,
  batch 32 (target on a GPU: under 0.3 s per epoch);
* `large`: 4 x 4096-wide Dense layers, batch 4096, `precision: mixed_bfloat16` (target: 50 % or
  more of the card's bf16 peak).

Epoch times come from the run's history.csv (`epoch_time_s`), the first epoch (compilation)
left out; TFLOP/s counts 6 x weights FLOPs per sample (forward 2, backward 4), the usual
estimate for dense layers. The peak is looked up from the device name (`--peak-tflops` to
give it). On a machine without a GPU the script runs too (`--small` shrinks the workloads),
which checks the script, not the speed.

    python benchmarks/gpu.py                       # jax backend, both workloads
    python benchmarks/gpu.py --backend tensorflow --workload seed
    python benchmarks/gpu.py --small               # a quick check on CPU
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

# Dense bf16 peak TFLOP/s (dense, no sparsity) of common cards, by a piece of their name.
PEAK_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}

WORKLOADS = {
    "seed": {
        "samples": 60_000,
        "features": 784,
        "classes": 10,
        "layers": [128, 64],
        "batch": 32,
        "epochs": 5,
        "precision": "auto",
    },
    "large": {
        "samples": 262_144,
        "features": 1024,
        "classes": 10,
        "layers": [4096] * 4,
        "batch": 4096,
        "epochs": 5,
        "precision": "mixed_bfloat16",
    },
}


def flops_per_sample(spec: dict) -> float:
    sizes = [spec["features"], *spec["layers"], spec["classes"]]
    weights = sum(a * b for a, b in itertools.pairwise(sizes))
    return 6.0 * weights


def write_data(path: Path, spec: dict) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(spec["samples"], spec["features"])).astype("float32")
    y = rng.integers(0, spec["classes"], spec["samples"]).astype("int64")
    np.savez(path, x_train=x, y_train=y)


def config(spec: dict, data: Path, backend: str) -> dict:
    layers = [{"type": "Dense", "units": units, "activation": "relu"} for units in spec["layers"]]
    return {
        "name": "gpu-bench",
        "seed": 0,
        "data": {"source": "npz", "path": str(data), "validation_split": 0.0, "test_split": 0.05},
        "model": {
            "layers": [
                *layers,
                {"type": "Dense", "units": spec["classes"], "activation": "softmax"},
            ]
        },
        "compile": {
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "training": {"epochs": spec["epochs"], "batch_size": spec["batch"]},
        "runtime": {"backend": backend, "precision": spec["precision"]},
        "output": {"tensorboard": False, "plots": False},
    }


def run(name: str, spec: dict, backend: str, folder: Path) -> dict:
    data = folder / f"{name}.npz"
    write_data(data, spec)
    cfg = folder / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config(spec, data, backend)))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            str(cfg),
            "--json",
            "--quiet",
            "--runs-dir",
            str(folder / "runs"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{name}: dlcli train failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout)
    run_dir = Path(result["run"])
    with open(run_dir / "history.csv") as handle:
        times = [float(row["epoch_time_s"]) for row in csv.DictReader(handle)]
    record = json.loads((run_dir / "run.json").read_text())
    epoch_s = statistics.median(times[1:] or times)
    train_samples = record["data"]["samples"]["train"]
    per_s = train_samples / epoch_s
    tflops = flops_per_sample(spec) * per_s / 1e12
    gpus = [d for d in record["devices"] if d["type"] == "GPU"]
    return {
        "workload": name,
        "device": gpus[0]["name"] if gpus else "CPU",
        "precision": record["runtime"]["precision"],
        "epoch_s": epoch_s,
        "samples_per_s": per_s,
        "tflops": tflops,
        "epochs": times,
    }


def peak_for(name: str) -> float | None:
    return next((value for key, value in PEAK_BF16.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax", choices=["jax", "tensorflow", "torch"])
    parser.add_argument("--workload", default="all", choices=["all", *WORKLOADS])
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the card's bf16 peak (default: by name)"
    )
    parser.add_argument(
        "--small", action="store_true", help="shrink the workloads (a check of the script on CPU)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    results = []
    with tempfile.TemporaryDirectory(prefix="dlcli-gpu-") as tmp:
        for name in names:
            spec = dict(WORKLOADS[name])
            if args.small:
                spec.update(
                    samples=min(spec["samples"], 4096),
                    layers=[min(u, 256) for u in spec["layers"]],
                    batch=min(spec["batch"], 256),
                    epochs=3,
                )
            result = run(name, spec, args.backend, Path(tmp))
            peak = args.peak_tflops or peak_for(result["device"])
            result["peak_share"] = result["tflops"] / peak if peak else None
            results.append(result)
    print(
        f"{'workload':<8} {'device':<24} {'precision':<15} {'s/epoch':>8} {'samples/s':>11} {'TFLOP/s':>8} {'of peak':>8}"
    )
    for r in results:
        share = f"{100 * r['peak_share']:.0f} %" if r["peak_share"] is not None else "?"
        print(
            f"{r['workload']:<8} {r['device'][:24]:<24} {r['precision']:<15} {r['epoch_s']:>8.3f} "
            f"{r['samples_per_s']:>11,.0f} {r['tflops']:>8.2f} {share:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
