"""End-to-end speed of `dlcli train` against the same work as a plain Keras script.

For each workload, `dlcli train CONFIG` and the hand-written script (benchmarks/baseline_keras.py,
or benchmarks/baseline_table.py, pandas + Keras, for the table workload) run alternately,
A B A B ..., each as a fresh process; the wall time of each is
taken from process start to exit, so Python start-up, imports, data loading, training,
evaluation, saving and everything dlcli writes count. The table shows the medians and the
ratio dlcli / plain; the exit status is 1 when a workload's median ratio exceeds
--max-ratio (the product requirement: 1.05).

    python benchmarks/bench_train.py                          # all workloads, 3 pairs each
    python benchmarks/bench_train.py --workload digits --repeats 5
    python benchmarks/bench_train.py --make-npz /tmp/bench_large.npz   # only write the NPZ

Workloads (configs in benchmarks/configs/):
    digits  sklearn digits, MLP 128-64, 20 epochs: start-up dominates
    large   20,000 x 256 synthetic NPZ, MLP 256-128, 10 epochs: training dominates
    census  configs/data/census.csv (6,000 rows, no header, text categories, '?' missing),
            MLP 64-32 behind dlcli's table encoding, 15 epochs; the baseline reads it with
            pandas and encodes it by hand (benchmarks/baseline_table.py)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline_keras.py"
TABLE_BASELINE = HERE / "baseline_table.py"
WORKLOADS = {
    "digits": {"config": HERE / "configs" / "digits_mlp.yaml", "npz": False},
    "large": {"config": HERE / "configs" / "large_mlp.yaml", "npz": True},
    # baseline_table.py reads the config itself (data, columns, model, optimizer, epochs)
    "census": {
        "config": HERE / "configs" / "census_mlp.yaml",
        "npz": False,
        "baseline": TABLE_BASELINE,
    },
    # The peer table's workloads (issue: speed): CSV files with a header, read by the plain
    # script with numpy.loadtxt; written into the temporary folder from fixed seeds.
    "digits_csv": {"config": HERE / "configs" / "digits_csv.yaml", "csv": "digits"},
    "csv180k": {"config": HERE / "configs" / "csv180k.yaml", "csv": "table180k"},
    # The classic MNIST MLP's shape (60,000 x 784, 10 epochs x 32): per-epoch speed.
    "seed": {"config": HERE / "configs" / "seed_mlp.yaml", "npz": "seed"},
}
# Ludwig 0.11's end-to-end time on csv180k on this class of machine (2 cores), from the speed
# issue's table (Ludwig is not installed here): the peer dlcli is compared with.
LUDWIG_S = {"csv180k": 37.31, "digits_csv": 13.44}


def make_npz(path: Path, n: int = 20_000, d: int = 256, k: int = 10, seed: int = 0) -> Path:
    """Synthetic classification data with a learnable, non-linear class structure.

    Each of the k classes is a mixture of 3 Gaussian blobs in d dimensions; the blobs'
    centres are close enough that classes overlap a little. Fixed seed: same bytes each time.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k * 3, d)) * 0.3
    y = rng.integers(0, k, size=n)
    blob = y * 3 + rng.integers(0, 3, size=n)
    x = (centres[blob] + rng.normal(size=(n, d))).astype("float32")
    np.savez(path, x_train=x, y_train=y.astype("int64"))
    return path


def make_seed_npz(path: Path) -> Path:
    """60,000 x 784 float32 in [0, 1], 10 classes: MNIST's shape, no download. Three noisy
    clusters per class with close centres, so that the MLP reaches ~0.94, not 1.0, and
    accuracies can be compared."""
    rng = np.random.default_rng(3)
    centres = rng.uniform(0.3, 0.7, size=(30, 784))
    y = rng.integers(0, 10, size=60_000)
    x = np.clip(
        centres[y * 3 + rng.integers(0, 3, size=y.size)]
        + rng.normal(scale=0.6, size=(y.size, 784)),
        0,
        1,
    )
    np.savez(path, x_train=x.astype("float32"), y_train=y.astype("int64"))
    return path


def make_csv(kind: str, path: Path) -> Path:
    """`digits`: scikit-learn's digits as a CSV (p0..p63, label); `table180k`: 180,000 rows x 63
    numbers and a label, as benchmarks/bench_tables.py writes them."""
    if kind == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        header = ",".join([f"p{i}" for i in range(x.shape[1])] + ["label"])
        np.savetxt(
            path,
            np.column_stack([x, y]).astype(int),
            fmt="%d",
            delimiter=",",
            header=header,
            comments="",
        )
        return path
    sys.path.insert(0, str(HERE))
    from bench_tables import write_csv

    return write_csv(path, 180_000)


def baseline_args(config_path: Path) -> list[str]:
    """The baseline's arguments for a config: epochs, batch size, hidden units, dropout.

    Only the shape the benchmark configs use is accepted (Dense [Dropout] Dense ... Dense
    softmax), so that a config edit that the baseline cannot follow fails loudly.
    """
    cfg = yaml.safe_load(config_path.read_text())
    layers = cfg["model"]["layers"]
    hidden, dropout = [], 0.0
    for i, layer in enumerate(layers[:-1]):
        if layer["type"] == "Dense" and layer.get("activation") == "relu":
            hidden.append(layer["units"])
        elif layer["type"] == "Dropout" and i == 1:
            dropout = layer["rate"]
        else:
            raise SystemExit(
                f"{config_path}: layer {i} ({layer}) is not what baseline_keras.py builds"
            )
    last = layers[-1]
    if last["type"] != "Dense" or last.get("activation") != "softmax":
        raise SystemExit(f"{config_path}: the last layer must be Dense softmax")
    training = cfg["training"]
    if (
        training.get("early_stopping")
        or training.get("reduce_lr_on_plateau")
        or training.get("callbacks")
    ):
        raise SystemExit(
            f"{config_path}: the benchmark needs a fixed number of epochs and no callbacks"
        )
    optimizer = cfg["compile"]["optimizer"]
    if not (
        optimizer == "adam"
        or (optimizer["type"] == "adam" and optimizer.get("learning_rate", 0.001) == 0.001)
    ):
        raise SystemExit(f"{config_path}: the baseline uses adam with its default learning rate")
    return [
        "--epochs",
        str(training["epochs"]),
        "--batch-size",
        str(training["batch_size"]),
        "--hidden",
        ",".join(map(str, hidden)),
        "--dropout",
        str(dropout),
        "--seed",
        str(cfg["seed"]),
    ]


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str, dict]:
    """Run a command; return its wall time (process start to exit), stdout and CPU figures.

    cpu_s is the process's own user+system time; other_cpu_s is CPU time the rest of the
    machine used meanwhile (another job competing for the cores makes wall times noisy).
    """
    busy, cpu = busy_cpu_seconds(), children_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    seconds = time.perf_counter() - started
    cpu = children_cpu_seconds() - cpu
    other = None if busy is None else max(0.0, busy_cpu_seconds() - busy - cpu)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}")
    return seconds, proc.stdout, {"cpu_s": cpu, "other_cpu_s": other}


def run_dlcli(cmd: list[str], runs: Path, cache: Path) -> tuple[float, dict]:
    """One `dlcli train`, with JAX's compilation cache in `cache`."""
    seconds, stdout, cpu = timed(cmd, {"DLCLI_COMPILE_CACHE": str(cache)})
    run = Path(stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    record = json.loads((run / "run.json").read_text())
    with open(run / "history.csv") as handle:
        epoch_times = [float(row["epoch_time_s"]) for row in csv.DictReader(handle)]
    shutil.rmtree(run)  # keep the disk as it was; each run writes into an empty runs dir
    return seconds, {
        "test_accuracy": metrics["test"].get("accuracy"),
        "epochs_run": metrics["epochs_run"],
        "steps_per_execution": record.get("runtime", {}).get("steps_per_execution"),
        "backend": record.get("runtime", {}).get("backend"),
        "epoch_s": later_epochs(epoch_times),
        **cpu,
    }


def run_plain(cmd: list[str], backend: str) -> tuple[float, dict]:
    seconds, stdout, cpu = timed(cmd, {"KERAS_BACKEND": backend})
    result = json.loads(stdout.strip().splitlines()[-1])
    return seconds, {**result, "epoch_s": later_epochs(result.get("epoch_times") or []), **cpu}


def later_epochs(times: list[float]) -> float | None:
    """The median epoch after the first (which compiles); None for a single epoch."""
    return statistics.median(times[1:]) if len(times) > 1 else None


def noisy_pair(row: dict, share: float = 0.05) -> bool:
    """Other processes used more than `share` of a run's wall time in CPU time."""
    return any(
        (row[side]["other_cpu_s"] or 0) > share * row[f"{side}_s"] for side in ("dlcli", "plain")
    )


def bench(
    name: str,
    repeats: int,
    warmup: int,
    match_runtime: bool,
    tmp: Path,
    retry_noisy: int = 0,
    dlcli_set: tuple = (),
    plain_backend: str = "tensorflow",
    cold: bool = False,
    vary_seed: bool = False,
) -> dict:
    spec = WORKLOADS[name]
    config = spec["config"]
    runs = tmp / f"runs-{name}"
    runs.mkdir()
    dlcli_cmd = [
        sys.executable,
        "-m",
        "dlcli",
        "train",
        str(config),
        "--quiet",
        "--runs-dir",
        str(runs),
    ]
    if spec.get("baseline") == TABLE_BASELINE:
        plain_cmd = [sys.executable, str(TABLE_BASELINE), str(config)]
    else:
        plain_cmd = [sys.executable, str(BASELINE), *baseline_args(config)]
    for item in dlcli_set:
        dlcli_cmd += ["--set", item]
    if spec.get("npz"):
        npz = (make_seed_npz if spec["npz"] == "seed" else make_npz)(tmp / f"{name}.npz")
        dlcli_cmd += ["--set", f"data.path={npz}"]
        plain_cmd += ["--npz", str(npz)]
    if spec.get("csv"):
        table = make_csv(spec["csv"], tmp / f"{name}.csv")
        dlcli_cmd += ["--set", f"data.path={table}"]
        plain_cmd += ["--csv", str(table), "--target", "label"]

    def plain_for(info: dict) -> list[str]:
        if match_runtime and info.get("steps_per_execution"):
            return [*plain_cmd, "--steps-per-execution", str(info["steps_per_execution"])]
        return plain_cmd

    base_seed = yaml.safe_load(config.read_text()).get("seed", 42)

    def seeded(cmd: list[str], pair: int, dlcli: bool) -> list[str]:
        """With --vary-seed, pair i runs both sides with seed base + i (the same splits and
        seed on both sides), so that the accuracy columns average over seeds."""
        if not vary_seed:
            return cmd
        seed = base_seed + pair
        return [*cmd, *(["--set", f"seed={seed}"] if dlcli else ["--seed", str(seed)])]

    caches = iter(range(10**6))

    def cache() -> Path:
        """JAX's compilation cache: one for the workload (filled by the warm-up, as a config
        run again finds it), or with --cold an empty one for every run (a first run)."""
        return tmp / (f"cache-{name}-{next(caches)}" if cold else f"cache-{name}")

    for _ in range(warmup):  # untimed: fills the OS file cache (imports, .pyc, data)
        _, info = run_dlcli(dlcli_cmd, runs, cache())
        run_plain(plain_for(info), plain_backend)

    rows = []
    retries_left = retry_noisy
    while len(rows) < repeats:  # A B A B ...: slow drift of the machine hits both alike
        a, info = run_dlcli(seeded(dlcli_cmd, len(rows), True), runs, cache())
        b, plain = run_plain(seeded(plain_for(info), len(rows), False), plain_backend)
        row = {"dlcli_s": a, "plain_s": b, "ratio": a / b, "dlcli": info, "plain": plain}
        other = [x for x in (info["other_cpu_s"], plain["other_cpu_s"]) if x is not None]
        noise = f"  other load {max(other):4.1f} cpu-s" if other else ""
        noisy, index = noisy_pair(row), len(rows) + 1
        if noisy and retries_left > 0:
            retries_left -= 1
            noise += " -> noisy, discarded and run again"
        else:
            rows.append(row)
            noise += " (noisy, kept: no retries left)" if noisy else ""
        epochs = (
            f"  | epoch {info['epoch_s']:.3f} / {plain['epoch_s']:.3f} s"
            if info["epoch_s"] and plain["epoch_s"]
            else ""
        )
        print(
            f"  {name} pair {index}/{repeats}: dlcli {a:6.2f} s  plain {b:6.2f} s  ratio {a / b:.3f}"
            f"  | cpu {info['cpu_s']:6.2f} / {plain['cpu_s']:6.2f} s{epochs}"
            f"  | test acc {info['test_accuracy']:.4f} / {plain['test_accuracy']:.4f}{noise}",
            flush=True,
        )
    dlcli_med = statistics.median(r["dlcli_s"] for r in rows)
    plain_med = statistics.median(r["plain_s"] for r in rows)
    epoch_pairs = [
        r["plain"]["epoch_s"] / r["dlcli"]["epoch_s"]
        for r in rows
        if r["dlcli"]["epoch_s"] and r["plain"]["epoch_s"]
    ]
    return {
        "backends": (rows[0]["dlcli"]["backend"], rows[0]["plain"]["backend"]),
        "epoch_s": (
            statistics.median(r["dlcli"]["epoch_s"] for r in rows) if epoch_pairs else None,
            statistics.median(r["plain"]["epoch_s"] for r in rows) if epoch_pairs else None,
        ),
        "epoch_speedup": statistics.median(epoch_pairs) if epoch_pairs else None,
        "vs_ludwig": LUDWIG_S[name] / dlcli_med if name in LUDWIG_S else None,
        "workload": name,
        "repeats": repeats,
        "pairs": rows,
        "dlcli_median_s": dlcli_med,
        "plain_median_s": plain_med,
        "ratio_of_medians": dlcli_med / plain_med,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "cpu_ratio": statistics.median(r["dlcli"]["cpu_s"] for r in rows)
        / statistics.median(r["plain"]["cpu_s"] for r in rows),
        # one seed: the median; --vary-seed: the mean over the pairs' seeds
        "dlcli_test_accuracy": (statistics.mean if vary_seed else statistics.median)(
            r["dlcli"]["test_accuracy"] for r in rows
        ),
        "plain_test_accuracy": (statistics.mean if vary_seed else statistics.median)(
            r["plain"]["test_accuracy"] for r in rows
        ),
        "seeds": [base_seed + i for i in range(len(rows))] if vary_seed else [base_seed],
        "epochs": (rows[0]["dlcli"]["epochs_run"], rows[0]["plain"]["epochs_run"]),
    }


def dlcli_state() -> str:
    """Which dlcli is measured: its version and, in a git checkout, the commit (+dirty)."""
    root = HERE.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "dlcli"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        where = f" at {commit}{' + uncommitted changes in dlcli/' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        where = ""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"dlcli {version('dlcli')}{where}"
    except PackageNotFoundError:
        return f"dlcli{where}"


def main() -> int:
    p = argparse.ArgumentParser(description="dlcli train vs a plain Keras script, end to end.")
    p.add_argument("--repeats", type=int, default=3, help="A/B pairs per workload (default 3)")
    p.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    p.add_argument(
        "--max-ratio", type=float, default=1.05, help="fail above this median dlcli/plain ratio"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed A/B pairs first (default 1)")
    p.add_argument(
        "--match-runtime",
        action="store_true",
        help="diagnostic: give the plain script dlcli's steps_per_execution, to isolate "
        "dlcli's fixed overhead from its runtime choices",
    )
    p.add_argument(
        "--retry-noisy",
        type=int,
        default=1,
        metavar="K",
        help="run a pair again (at most K times per workload) when other processes used"
        " over 5%% of its wall time in CPU (Linux; default 1)",
    )
    p.add_argument(
        "--dlcli-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="diagnostic: an extra --set for dlcli only (e.g. output.plots=false), to see"
        " what a feature costs; the plain script is unchanged",
    )
    p.add_argument(
        "--plain-backend",
        default="tensorflow",
        choices=("tensorflow", "jax", "torch"),
        help="KERAS_BACKEND for the plain script (default tensorflow: Keras's default, what "
        "a script gets unless its user changes it)",
    )
    p.add_argument(
        "--cold",
        action="store_true",
        help="an empty JAX compilation cache for every dlcli run (a config's first run); "
        "default: the warm-up run fills it, as for a config run again",
    )
    p.add_argument(
        "--vary-seed",
        action="store_true",
        help="pair i uses seed (config seed + i) on both sides; the accuracy columns are then"
        " means over the seeds (one seed's accuracy differs between any two scripts by"
        " the luck of initialisation and shuffling)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--make-npz", type=Path, metavar="PATH", help="only write the 'large' NPZ to PATH"
    )
    args = p.parse_args()

    if args.make_npz:
        make_npz(args.make_npz)
        print(args.make_npz)
        return 0

    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    print(
        f"{dlcli_state()}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs;"
        f" {args.repeats} A/B pairs per workload"
        f" after {args.warmup} untimed; A = dlcli train, B = "
        + ", ".join(sorted({WORKLOADS[n].get("baseline", BASELINE).name for n in names}))
        + (" (with dlcli's steps_per_execution)" if args.match_runtime else "")
        + "".join(f"; dlcli --set {item}" for item in args.dlcli_set),
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-") as tmp:
        for name in names:
            results.append(
                bench(
                    name,
                    args.repeats,
                    args.warmup,
                    args.match_runtime,
                    Path(tmp),
                    args.retry_noisy,
                    tuple(args.dlcli_set),
                    args.plain_backend,
                    args.cold,
                    args.vary_seed,
                )
            )

    print()
    header = (
        f"{'workload':<10} {'backends':>13} {'epochs':>6} {'dlcli s':>8} {'plain s':>8} {'ratio':>6} {'ratio/pair':>10}"
        f" {'cpu ratio':>9} {'epoch x':>7} {'ludwig x':>8} {'dlcli acc':>9} {'plain acc':>9}"
    )
    print(header)
    print("-" * len(header))
    failed = []
    for r in results:
        backends = "/".join({"tensorflow": "tf"}.get(b, b) for b in r["backends"])
        speedup = f"{r['epoch_speedup']:>7.2f}" if r["epoch_speedup"] else f"{'-':>7}"
        ludwig = f"{r['vs_ludwig']:>8.2f}" if r["vs_ludwig"] else f"{'-':>8}"
        print(
            f"{r['workload']:<10} {backends:>13} {r['epochs'][0]:>6} {r['dlcli_median_s']:>8.2f} {r['plain_median_s']:>8.2f}"
            f" {r['ratio_of_medians']:>6.3f} {r['median_ratio']:>10.3f} {r['cpu_ratio']:>9.3f} {speedup} {ludwig}"
            f" {r['dlcli_test_accuracy']:>9.4f} {r['plain_test_accuracy']:>9.4f}"
        )
        if r["median_ratio"] > args.max_ratio or math.isnan(r["median_ratio"]):
            failed.append(r["workload"])
    print(
        "\nseconds are medians of wall time per process; ratio = dlcli median / plain median;"
        " ratio/pair = median of the per-pair ratios (the gate);\ncpu ratio = the same for user+system"
        " CPU time (less sensitive to other jobs on the machine; not the gate);\nbackends = dlcli's"
        " (runtime.backend: auto) / the plain script's; epoch x = plain seconds per epoch / dlcli's"
        " (epochs after the first, median of pairs);\nludwig x = Ludwig 0.11's time from the speed"
        " issue / dlcli's median"
        + (
            "; acc = mean test accuracy over the pairs' seeds"
            if args.vary_seed
            else "; acc = median test accuracy (one seed)"
        )
    )
    noisy = [r["workload"] for r in results for pair in r["pairs"] if noisy_pair(pair)]
    if noisy:
        print(
            "warning: other processes used the CPU during some runs ("
            + ", ".join(sorted(set(noisy)))
            + "); wall times are noisy, run again on a quiet machine or with more --repeats"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        print(f"FAIL: dlcli/plain above {args.max_ratio} for: {', '.join(failed)}")
        return 1
    print(f"OK: dlcli/plain within {args.max_ratio} for every workload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
