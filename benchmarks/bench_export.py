"""How fast each `dlcli export` copy answers, against Keras's `model.predict` on the same inputs.

Trains a config into a temporary runs dir (default: the digits MLP and the census table,
few epochs), runs `dlcli export RUN --json` on it, and prints, per format, the latency per
sample at batch 1 and batch 256 that exports.json records (each copy in its own runtime,
median of repeated calls after a warm-up) and its ratio to `model.predict` measured in the
same process on the same test rows.

    python benchmarks/bench_export.py
    python benchmarks/bench_export.py --config configs/diabetes_regression.yaml --epochs 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dlcli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dlcli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"dlcli {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        action="append",
        type=Path,
        help="configs to train and export (default: configs/digits_mlp.yaml, configs/census_table.yaml)",
    )
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    configs = args.config or [
        ROOT / "configs" / "digits_mlp.yaml",
        ROOT / "configs" / "census_table.yaml",
    ]
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-export-") as tmp:
        for config in configs:
            out = dlcli(
                "train",
                str(config),
                "--runs-dir",
                tmp,
                "--quiet",
                "--set",
                f"training.epochs={args.epochs}",
                "--set",
                "output.tensorboard=false",
                "--set",
                "output.plots=false",
            )
            run = out.strip().splitlines()[-1]
            report = json.loads(dlcli("export", run, "--json"))
            reference = report["reference"]["latency_ms_per_sample"]
            print(
                f"\n{config.name}: {report['test_samples']} test samples, {report['route']}, "
                f"precision {report['precision']}"
            )
            print(
                f"{'format':<12} {'takes':<17} {'KiB':>7} {'max|diff|':>10} {'agree':>6}"
                f" {'ms/sample@1':>12} {'speed-up':>9} {'ms/sample@256':>14} {'speed-up':>9}"
            )
            for name, entry in report["formats"].items():
                latency = entry.get("latency_ms_per_sample") or {}
                if not latency:
                    print(f"{name:<12} {entry.get('status')}: {entry.get('error')}")
                    continue
                agreement = "-" if entry.get("agreement") is None else f"{entry['agreement']:.4f}"
                print(
                    f"{name:<12} {entry['takes']:<17} {entry['bytes'] / 1024:>7.0f} {entry['max_abs_diff']:>10.2g}"
                    f" {agreement:>6} {latency['1']:>12.4f} {reference['1'] / latency['1']:>8.1f}x"
                    f" {latency['256']:>14.5f} {reference['256'] / latency['256']:>8.1f}x"
                )
            print(
                f"{'model.predict':<12} {'(Keras, TF)':<17} {'':>7} {'':>10} {'':>6} {reference['1']:>12.4f}"
                f" {'1.0x':>9} {reference['256']:>14.5f} {'1.0x':>9}"
            )
    print(
        "\nspeed-up: model.predict's latency / the copy's, on the same rows. Each copy runs in its own"
        " runtime in the export process (TensorFlow, onnxruntime, the LiteRT interpreter, Keras eager)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
