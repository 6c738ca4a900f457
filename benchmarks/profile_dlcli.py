"""Where `dlcli train` spends its time: one run in this process, its phases timed.

dlcli itself is not changed: its functions (and a few Keras methods) are wrapped with
timers before `dlcli train` runs, exactly as `python -m dlcli train CFG --quiet` would.
Phases are reported in the order they happen, then the time inside `model.fit` that goes
to dlcli's per-epoch work (the checkpoint `model.save`, history/state files) and to the
TensorBoard callback.

    python benchmarks/profile_dlcli.py                        # the digits workload
    python benchmarks/profile_dlcli.py --workload large
    python benchmarks/profile_dlcli.py --workload csv180k --set runtime.backend=tensorflow

Times are of one run (the first of its process), so they include each import's first cost.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse
import collections
import functools
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMES: dict[str, list[float]] = collections.defaultdict(list)


def timer(name, func, classify=None):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            key = classify(*args, **kwargs) if classify else name
            TIMES[key].append(time.perf_counter() - started)

    return wrapper


def patch(owner, attr, name=None, classify=None):
    """Wrap owner.attr with a timer; a name dlcli no longer has is skipped, with a note."""
    if not hasattr(owner, attr):
        print(
            f"note: {getattr(owner, '__name__', owner)}.{attr} not found; not timed",
            file=sys.stderr,
        )
        return
    setattr(
        owner,
        attr,
        timer(
            name or f"{getattr(owner, '__name__', owner)}.{attr}", getattr(owner, attr), classify
        ),
    )


IN_FIT = [False]


def fit_flag(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        IN_FIT[0] = True
        try:
            return func(*args, **kwargs)
        finally:
            IN_FIT[0] = False

    return wrapper


def main() -> int:
    p = argparse.ArgumentParser()
    sys.path.insert(0, str(HERE))
    from bench_train import WORKLOADS, make_csv, make_npz, make_seed_npz

    p.add_argument("--workload", choices=list(WORKLOADS), default="digits")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], help="passed to dlcli train"
    )
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dlcli-profile-"))
    spec = WORKLOADS[args.workload]
    config = spec["config"]
    extra = []
    if spec.get("npz"):
        extra = [
            "--set",
            f"data.path={(make_seed_npz if spec['npz'] == 'seed' else make_npz)(tmp / 'data.npz')}",
        ]
    if spec.get("csv"):
        extra = ["--set", f"data.path={make_csv(spec['csv'], tmp / 'data.csv')}"]
    for item in args.overrides:
        extra += ["--set", item]
    t_setup = time.perf_counter()

    # -- the CLI layer: typer, rich, pydantic, yaml (what `dlcli --help` imports)
    started = time.perf_counter()
    import dlcli.cli

    TIMES["import dlcli.cli (typer, rich)"].append(time.perf_counter() - started)
    started = time.perf_counter()
    import dlcli.training.prepare as preparing
    import dlcli.training.session as training
    from dlcli.runs import reports
    from dlcli.runs.runfolder import RunFolder

    TIMES["import dlcli.training.session (pydantic, yaml, numpy, ...)"].append(
        time.perf_counter() - started
    )

    def after_keras(keras):
        keras.Model.fit = fit_flag(keras.Model.fit)
        patch(keras.Model, "fit", "model.fit (all epochs, with callbacks)")
        patch(keras.Model, "evaluate", "model.evaluate (validation per epoch inside fit, + test)")
        patch(keras.Model, "summary", "model.summary -> summary.txt")
        patch(
            keras.Model,
            "save",
            classify=lambda *a, **k: (
                "  per-epoch checkpoint model.save (Recorder)" if IN_FIT[0] else "final model.save"
            ),
        )
        patch(
            keras.Model,
            "get_weights",
            classify=lambda *a, **k: (
                "    model.get_weights (in fit: checkpoint snapshot)"
                if IN_FIT[0]
                else "model.get_weights"
            ),
        )
        predict = keras.Model.predict
        keras.Model.predict = timer("model.predict", predict)
        return keras

    import_keras = preparing.import_keras
    preparing.import_keras = lambda *a, **k: after_keras(
        timer("import keras + its backend (import_keras)", import_keras)(*a, **k)
    )
    for module, name, label in (
        (preparing, "enable_memory_growth", "enable_memory_growth"),
        (preparing, "load_data", "load_data (incl. sklearn import)"),
        (preparing, "list_devices", "list_devices"),
        (preparing, "build_model", "build_model + compile"),
        (training, "versions", "versions() (importlib.metadata)"),
        (training, "predicted_classes", "predict test split (for the confusion matrix)"),
    ):
        patch(module, name, label)
    patch(preparing.checks, "config_problems", "pre-flight checks (callbacks, runtime)")
    patch(training.metrics, "final_metrics", "final_metrics")

    real_open = training._open

    def timed_open(*a, **k):
        # callbacks_for is imported inside train() once Keras is up (which `_open` does, as it
        # prepares the run): time it and its Recorder after that, never import it first.
        claim = real_open(*a, **k)
        from dlcli.training import callbacks

        if not getattr(callbacks, "_profiled", False):
            callbacks._profiled = True
            patch(callbacks, "callbacks_for", "callbacks_for (construct callbacks)")
            for hook in ("on_epoch_end", "on_train_end", "on_train_batch_end"):
                patch(
                    callbacks.Recorder, hook, f"  Recorder.{hook} (dlcli: history, snapshot, saves)"
                )
            for hook in (
                "on_epoch_end",
                "on_train_end",
            ):  # the writing itself is on a worker thread
                patch(
                    callbacks.EpochBoard, hook, f"  EpochBoard.{hook} (TensorBoard scalars, queued)"
                )
        return claim

    training._open = timed_open
    patch(RunFolder, "create", "RunFolder.create (+ labels.json, summary.txt after)")
    patch(RunFolder, "append_history", "  history.csv append (fsync)")
    patch(
        RunFolder,
        "write_json",
        classify=lambda self, name, data: (
            "  checkpoints/state.json (fsync)" if "state" in name else f"write {name} (fsync)"
        ),
    )
    patch(reports, "write_run_reports", "curves.png + confusion matrix (worker thread, total)")
    patch(reports, "write_confusion", "  confusion_matrix.csv + .png")

    argv = ["dlcli", "train", str(config), "--quiet", "--runs-dir", str(tmp / "runs"), *extra]
    sys.argv = argv
    started = time.perf_counter()
    from dlcli.cli.program import Program

    try:
        dlcli.cli.app(
            argv[1:], obj=Program()
        )  # as `dlcli.cli.main()` runs it, which then ends the process
    except SystemExit as exc:
        if exc.code:
            raise
    TIMES["(dlcli train command, total)"].append(time.perf_counter() - started)
    total = time.perf_counter() - T0 - (t_setup - T0)
    import csv
    import json

    run = next((tmp / "runs").iterdir())
    with open(run / "history.csv") as handle:
        epochs = [float(row["epoch_time_s"]) for row in csv.DictReader(handle)]
    record = json.loads((run / "run.json").read_text())
    TIMES["  of fit: first epoch (compiles train and validation steps)"].append(epochs[0])
    TIMES["  of fit: the other epochs"].append(sum(epochs[1:]))
    print(
        f"backend {record['runtime']['backend']} ({record['runtime'].get('backend_reason')}); "
        f"compile cache {record.get('compile_cache')}",
        file=sys.stderr,
    )

    print(f"\nprofile of: {' '.join(argv)}", file=sys.stderr)
    print(f"{'phase':<64} {'calls':>5} {'total s':>8} {'per call':>9}", file=sys.stderr)
    for name, values in TIMES.items():
        print(
            f"{name:<64} {len(values):>5} {sum(values):>8.3f} {sum(values) / len(values):>9.4f}",
            file=sys.stderr,
        )
    print(
        f"{'(script: import dlcli.cli .. exit, not counting setup)':<64} {'':>5} {total:>8.3f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
