"""Images: `dlcli train` on a folder of images against the hand-written Keras script.

The folder is generated once (default 50,000 PNG files of 64x64, ten classes, 10 epochs: scikit-learn's
digits, upscaled, coloured and noised so that each file differs). Each repeat runs, in
alternating order and each in a fresh process:

  - hand: `keras.utils.image_dataset_from_directory` + `cache()` + `prefetch()`, the same
    Sequential (Rescaling in front), `fit` on 64% of the files for --epochs epochs;
  - dlcli: `dlcli train` of the same model on the same folder (its 64% training split).

For each it reports the end-to-end wall time, the images per second of `fit` (training
images x epochs / fit seconds) and the peak resident memory of the process; the ratio of the
wall times per pair, and their median. `--sizes` also trains dlcli on a smaller folder, to
show that its peak memory does not grow with the number of images. `--backends` trains the
model on each backend (on the smallest of `--sizes`), as `runtime.backend: auto` weighs them
for convolutional models.

    python benchmarks/bench_images.py                      # 50,000 images, 10 epochs
    python benchmarks/bench_images.py --images 5000 --epochs 2 --repeats 1 --sizes 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LAYERS = [
    {"type": "Conv2D", "filters": 16, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D"},
    {"type": "GlobalAveragePooling2D"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def make_folder(folder: Path, count: int, side: int = 64) -> Path:
    """`count` PNG files of side x side in ten class folders (skipped when already there)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    marker = folder / f".made-{count}-{side}"
    if marker.exists():
        return folder
    digits = load_digits()
    rng = np.random.default_rng(0)
    for i in range(count):
        k = i % len(digits.images)
        gray = (digits.images[k] / 16 * 255).astype("uint8")
        gray = np.asarray(Image.fromarray(gray).resize((side, side), Image.BILINEAR))
        rgb = np.stack([gray, np.roll(gray, i % 5, 0), 255 - gray], -1).astype(int)
        rgb = np.clip(rgb + rng.integers(-20, 20, rgb.shape), 0, 255).astype("uint8")
        target = folder / str(digits.target[k]) / f"{i}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(target)
    marker.write_text("")
    return folder


HAND = textwrap.dedent(
    """
    import json, os, sys, time
    started = time.perf_counter()
    import keras, tensorflow as tf
    folder, epochs, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    train, val = keras.utils.image_dataset_from_directory(
        folder, image_size=(side, side), batch_size=32, seed=1,
        validation_split=0.36, subset="both", verbose=False)
    train = train.cache().prefetch(tf.data.AUTOTUNE)
    val = val.cache().prefetch(tf.data.AUTOTUNE)
    layers = [keras.Input((side, side, 3)), keras.layers.Rescaling(1 / 255)]
    for spec in json.loads(sys.argv[4]):
        spec = dict(spec)
        layers.append(getattr(keras.layers, spec.pop("type"))(**spec))
    model = keras.Sequential(layers)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    fit_started = time.perf_counter()
    model.fit(train, validation_data=val, epochs=epochs, verbose=0)
    fit_s = time.perf_counter() - fit_started
    images = sum(int(x.shape[0]) for x, _ in train)
    accuracy = model.evaluate(val, verbose=0, return_dict=True)["accuracy"]
    print(json.dumps({"images_per_s": images * epochs / fit_s, "accuracy": accuracy}))
    """
)


def peak_of(command: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one process (its own rusage: Linux KiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command[:5])} failed (exit {os.waitstatus_to_exitcode(status)})")
    return wall, usage.ru_maxrss / 1024, out


def hand(folder: Path, epochs: int, side: int, env: dict) -> dict:
    wall, peak, out = peak_of(
        [sys.executable, "-c", HAND, str(folder), str(epochs), str(side), json.dumps(LAYERS)],
        env,
    )
    return {"wall_s": wall, "peak_mib": peak, **json.loads(out.strip().splitlines()[-1])}


def dlcli(folder: Path, epochs: int, side: int, work: Path, env: dict, backend: str) -> dict:
    import yaml

    config = {
        "name": "bench-images",
        "seed": 1,
        "data": {"source": "images", "path": str(folder), "image_size": [side, side]},
        "model": {"layers": LAYERS},
        "compile": {"optimizer": "adam", "metrics": ["accuracy"]},
        "training": {"epochs": epochs, "batch_size": 32},
        "runtime": {"backend": backend},
        "output": {"tensorboard": False, "plots": False, "baselines": "none"},
    }
    path = work / "images.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "dlcli", "train", str(path), "--runs-dir", str(work / "runs")]
    wall, peak, out = peak_of([*command, "--json", "--quiet"], env)
    result = json.loads(out.strip().splitlines()[-1])
    record = json.loads((Path(result["run"]) / "run.json").read_text())
    return {
        "wall_s": wall,
        "peak_mib": peak,
        "images_per_s": result.get("samples_per_s"),
        "accuracy": result["val"].get("accuracy"),
        "backend": record["versions"].get("backend"),
        "load_s": record["timings"].get("load_s"),
    }


def show(name: str, result: dict) -> None:
    print(
        f"  {name:<18} wall {result['wall_s']:7.1f} s   fit {result['images_per_s'] or 0:8.0f} "
        f"images/s   peak {result['peak_mib']:7.0f} MiB   val accuracy {result['accuracy']:.3f}"
        + (f"   decode {result['load_s']:.1f} s" if result.get("load_s") else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000])
    parser.add_argument("--backends", nargs="*", default=[])
    parser.add_argument("--folder", type=Path, default=None, help="where the images go (kept)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    base = args.folder or work / "images"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DLCLI_COMPILE_CACHE": str(work / "cache")}
    print(f"generating {args.images:,} images of {args.side}x{args.side} ...", flush=True)
    folder = make_folder(base / f"n{args.images}", args.images, args.side)
    print(f"{args.images:,} images, {args.epochs} epochs, {os.cpu_count()} cores")
    ratios = []
    for repeat in range(args.repeats):
        order = ("hand", "dlcli") if repeat % 2 == 0 else ("dlcli", "hand")
        results = {}
        for side in order:
            if side == "hand":
                results[side] = hand(folder, args.epochs, args.side, env)
            else:
                results[side] = dlcli(folder, args.epochs, args.side, work, env, "tensorflow")
        print(f"repeat {repeat + 1}:")
        show("hand-written keras", results["hand"])
        show("dlcli train", results["dlcli"])
        ratio = results["dlcli"]["wall_s"] / results["hand"]["wall_s"]
        speed = results["dlcli"]["images_per_s"] / results["hand"]["images_per_s"]
        ratios.append((ratio, speed))
        print(f"  dlcli / hand: wall {ratio:.2f}x, fit images/s {speed:.2f}x")
    if ratios:
        print(
            f"median: wall {statistics.median(r for r, _ in ratios):.2f}x, "
            f"fit images/s {statistics.median(s for _, s in ratios):.2f}x"
        )
    for count in args.sizes:
        smaller = make_folder(base / f"n{count}", count, args.side)
        result = dlcli(smaller, args.epochs, args.side, work, env, "tensorflow")
        print(f"dlcli on {count:,} images:")
        show("dlcli train", result)
    backend_folder = (
        make_folder(base / f"n{min(args.sizes)}", min(args.sizes), args.side)
        if args.sizes
        else folder
    )
    for backend in args.backends:
        result = dlcli(backend_folder, args.epochs, args.side, work, env, backend)
        print(f"backend {backend} ({backend_folder.name[1:]} images):")
        show(f"dlcli ({result['backend']})", result)


if __name__ == "__main__":
    main()
