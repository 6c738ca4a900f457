"""Training: config -> data -> model -> fit -> evaluate -> run folder.

`prepare` does everything up to a compiled model and is what `dlcli validate` runs: every
problem it finds is a ConfigError (exit 2) raised before a run folder exists. `train`
then claims a run folder, fits with the configured callbacks, evaluates on the test split
and writes the files of the contract (SPEC 5). Whatever happens after the folder exists,
run.json ends as completed, failed (with the error) or interrupted.

Example:
    >>> result = train("configs/digits_mlp.yaml", overrides=["training.epochs=3"])
    >>> result.metrics["test"]["accuracy"]
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dlcli.config import Config, load_config
from dlcli.data import Dataset, load_data
from dlcli.errors import ConfigError, Interrupted, Problem, RunFailed
from dlcli.model import build_model, parameter_counts, predicted_classes, targets_for
from dlcli.runfolder import RunFolder, atomic_write, effective_status, goal, now_iso, runs_dir_from
from dlcli.runtime import (
    apply_runtime,
    choose_runtime,
    enable_memory_growth,
    import_keras,
    list_devices,
    versions,
)

# Keyword arguments of keras.callbacks that name files: kept inside the run folder.
PATH_ARGUMENTS = ("filename", "filepath", "log_dir", "backup_dir")


@dataclass
class Prepared:
    """What `prepare` hands on: the resolved config, data, compiled model, runtime choices."""

    config: Config
    data: Dataset
    model: object
    choices: dict
    keras: object


@dataclass
class TrainResult:
    run: RunFolder
    metrics: dict
    record: dict


def as_config(config: Config | str | os.PathLike | dict, overrides=()) -> Config:
    if isinstance(config, Config):
        return load_config(config.to_dict(), overrides) if overrides else config
    return load_config(config, overrides)


def prepare(config: Config | str | dict, overrides=()) -> Prepared:
    """Validate the config, load the data, build and compile the model; nothing is written."""
    try:
        config = as_config(config, overrides)
    except ConfigError as exc:
        raise ConfigError(exc.problems + _keras_name_problems(config, overrides)) from None
    keras = import_keras(config.runtime.backend, config.where(("runtime", "backend")))
    check_callbacks(config)
    enable_memory_growth(config.runtime.backend)
    data = load_data(config)
    steps = math.ceil(len(data.x_train) / config.training.batch_size)
    choices = choose_runtime(config.runtime, list_devices(config.runtime.backend), steps)
    with apply_runtime(keras, choices, config.seed):
        model = build_model(config, data, keras, choices)
    choices["jit_compile"] = bool(getattr(model, "jit_compile", False))
    return Prepared(config, data, model, choices, keras)


def _keras_name_problems(source, overrides) -> list[Problem]:
    """When the schema fails, still report unknown Keras names and arguments (best effort)."""
    from dlcli import registry
    from dlcli.config import locator, raw_config

    if isinstance(source, Config):
        return []
    try:
        data, lines, shown, origins = raw_config(source, overrides)
        import_keras("tensorflow")
    except ConfigError:
        return []
    where = locator(lines, shown, origins)
    return [where(path, message) for path, message in registry.name_problems(data)]


def _callback_state(es, rlr) -> dict:
    out = {}
    if es is not None:
        out["early_stopping"] = {"wait": es.wait, "best": _float(es.best), "best_epoch": es.best_epoch,
                                 "stopped_epoch": es.stopped_epoch}
    if rlr is not None:
        out["reduce_lr_on_plateau"] = {"wait": rlr.wait, "best": _float(rlr.best), "cooldown_counter": rlr.cooldown_counter}
    return out


def _float(value):
    return None if value is None else float(value)


CHECKPOINT_INTERVAL_S = 2.0


def _recorder(keras, run: RunFolder, state: dict, es=None, rlr=None):
    """Per epoch: one history row, a snapshot of the epoch in memory, and a NaN guard.

    The snapshot (weights, optimizer variables, callback state; Keras's BackupAndRestore
    keeps no callback state: keras-team/keras#14862) goes to `checkpoints/` at most every
    CHECKPOINT_INTERVAL_S, at the end of training and when training is interrupted, so
    small models do not spend their time saving. It runs after EarlyStopping and
    ReduceLROnPlateau each epoch, so their state is the epoch's.
    """
    checkpoints = run.file("checkpoints")

    class Recorder(keras.callbacks.Callback):
        snapshot = None
        written_at = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True  # stop now; on_epoch_end records the epoch

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            logs.pop("learning_rate", None)
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            row["lr"] = lr
            row["epoch_time_s"] = round(time.perf_counter() - self.started, 4)
            run.append_history(row)
            state["epochs_run"] = epoch + 1
            state["rows"].append(row)
            if es is not None and es.restore_best_weights:
                state["best_epoch"] = es.best_epoch + 1
            if not all(math.isfinite(v) for k, v in row.items() if k.endswith("loss")):
                state["diverged"] = epoch + 1
                self.model.stop_training = True
                return
            weights, optimizer = _values(keras, self.model)
            self.snapshot = {
                "rng": [keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(self.model)],
                "weights": weights,
                "optimizer": optimizer,
                "state": {"epoch": epoch + 1, "time": now_iso(), "lr": lr, **_callback_state(es, rlr)},
                "best_weights": es.best_weights if es is not None else None,
                "best_epoch": es.best_epoch + 1 if es is not None else None,
            }
            if time.perf_counter() - self.written_at >= CHECKPOINT_INTERVAL_S:
                self.write(current=True)

        def on_train_end(self, logs=None):
            self.write()  # EarlyStopping may have restored best weights: write the snapshot

        def write(self, current: bool = False):
            """Put the last completed epoch in checkpoints/: `epoch-NNNN.keras` (weights and
            optimizer), `best-NNNN.npz` (early stopping's best weights), then `state.json`,
            which names them: it is the commit point, so a kill between writes leaves the
            previous, consistent checkpoint in force."""
            snap, self.snapshot = self.snapshot, None
            if snap is None:
                return
            model, epoch = self.model, snap["state"]["epoch"]
            if not current:  # the model has moved on (interrupt) or back (best weights)
                now = _values(keras, model)
                _assign(model, snap["weights"], snap["optimizer"])
            name = f"epoch-{epoch:04d}.keras"
            try:
                _save(model.save, checkpoints / name)
            finally:
                if not current:
                    _assign(model, *now)
            best = None
            if snap["best_weights"] is not None:
                best = f"best-{snap['best_epoch']:04d}.npz"
                if not (checkpoints / best).exists():
                    # EarlyStopping's own form (get_weights): no optimizer state rides along.
                    _save(lambda tmp: _save_arrays(tmp, snap["best_weights"]), checkpoints / best)
            run.write_json("checkpoints/state.json", {
                **snap["state"], "checkpoint": name, "best_weights": best, "rng": snap["rng"],
            })
            for stale in checkpoints.iterdir():
                if stale.name not in (name, best, "state.json"):
                    stale.unlink(missing_ok=True)
            self.written_at = time.perf_counter()

    recorder = Recorder()
    state["recorder"] = recorder
    return recorder


def _seed_states(model) -> list:
    """The layers' random-number state (Dropout's seed generators): Keras does not save it."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _values(keras, model) -> tuple[list, list]:
    """The model's weights and optimizer variables as numpy arrays (what `_assign` restores)."""
    return model.get_weights(), [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def _assign(model, weights, optimizer_values) -> None:
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_values):
        variable.assign(value)


def _save_arrays(path: Path, arrays: list) -> None:
    import numpy as np

    with open(path, "wb") as handle:
        np.savez(handle, **{f"w{i}": a for i, a in enumerate(arrays)})


def _save(save, path: Path) -> None:
    """Keras writes to a temp name (same suffix) that is then renamed over the old file."""
    tmp = path.with_name(f".tmp{path.suffix}")
    save(tmp)
    os.replace(tmp, path)


def _restorer(keras, checkpoints: Path, saved: dict, es=None, rlr=None):
    """Puts the callbacks' saved state back after their on_train_begin reset it."""

    class Restorer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if es is not None and "early_stopping" in saved:
                st = saved["early_stopping"]
                es.wait, es.best, es.best_epoch, es.stopped_epoch = st["wait"], st["best"], st["best_epoch"], 0
                best = checkpoints / (saved.get("best_weights") or "-")
                if es.restore_best_weights and best.is_file():
                    import numpy as np

                    with np.load(best, allow_pickle=False) as arrays:
                        es.best_weights = [arrays[f"w{i}"] for i in range(len(arrays.files))]
            if rlr is not None and "reduce_lr_on_plateau" in saved:
                st = saved["reduce_lr_on_plateau"]
                rlr.wait, rlr.best, rlr.cooldown_counter = st["wait"], st["best"], st["cooldown_counter"]

    return Restorer()


def _stays_inside(value: str) -> bool:
    path = Path(value)
    return not path.is_absolute() and ".." not in path.parts


def callbacks_for(prepared: Prepared, run: RunFolder, state: dict, progress=None, saved: dict | None = None) -> list:
    """EarlyStopping, ReduceLROnPlateau, extra callbacks, then dlcli's recorder (which
    saves their state), the restorer on --resume, TensorBoard and progress."""
    keras, config = prepared.keras, prepared.config
    from dlcli import registry

    t = config.training
    es = keras.callbacks.EarlyStopping(**t.early_stopping.model_dump()) if t.early_stopping else None
    rlr = keras.callbacks.ReduceLROnPlateau(**t.reduce_lr_on_plateau.model_dump()) if t.reduce_lr_on_plateau else None
    callbacks = [cb for cb in (es, rlr) if cb is not None]
    for spec in t.callbacks:
        kwargs = spec.kwargs  # file names were checked to stay inside (check_callbacks)
        for key in PATH_ARGUMENTS:
            if isinstance(kwargs.get(key), str):
                kwargs[key] = str(run.path / kwargs[key])
        callbacks.append(registry.construct("callback", spec.type, kwargs))
    # Not keras.callbacks.TerminateOnNaN: it prints to stdout, which `--json` keeps clean.
    callbacks.append(_recorder(keras, run, state, es, rlr))
    if saved:
        callbacks.append(_restorer(keras, run.file("checkpoints"), saved, es, rlr))
    if config.output.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run.file("tensorboard")), write_graph=False))
    if progress is not None:
        callbacks.append(progress)
    return callbacks


def check_callbacks(config: Config) -> None:
    """Callback names and arguments, checked before a folder exists."""
    from dlcli import registry

    problems = []
    for index, spec in enumerate(config.training.callbacks):
        try:
            registry.check("callback", spec.type, spec.kwargs)
        except registry.NameProblem as exc:
            path = ("training", "callbacks", index, *([exc.key] if exc.key else []))
            problems.append(config.problem(path, str(exc)))
        for key in PATH_ARGUMENTS:
            value = spec.kwargs.get(key)
            if isinstance(value, str) and not _stays_inside(value):
                problems.append(config.problem(
                    ("training", "callbacks", index, key),
                    f"{key} {value!r} leaves the run folder; give a name inside it, such as 'log.csv'",
                ))
    if problems:
        raise ConfigError(problems)


def _best_epoch(config: Config, rows: list[dict]) -> int:
    if not rows:
        return 0
    es = config.training.early_stopping
    monitor = es.monitor if es else ("val_loss" if "val_loss" in rows[0] else "loss")
    if monitor not in rows[0]:
        return rows[-1]["epoch"]
    mode = es.mode if es is not None else "auto"
    higher = mode == "max" or (mode == "auto" and goal(monitor) == "max")
    pick = max if higher else min
    return pick(rows, key=lambda r: r[monitor] if math.isfinite(r[monitor]) else (-math.inf if higher else math.inf))["epoch"]


def final_metrics(config: Config, rows: list[dict], test: dict, samples_per_s: float, best: int) -> dict:
    """metrics.json: train/val at the kept epoch (best when early stopping restored it)."""
    es = config.training.early_stopping
    kept_epoch = best if es is not None and es.restore_best_weights else (rows[-1]["epoch"] if rows else 0)
    kept = next((r for r in rows if r["epoch"] == kept_epoch), {})
    skip = ("epoch", "lr", "epoch_time_s")
    train = {k: v for k, v in kept.items() if k not in skip and not k.startswith("val_")}
    val = {k[4:]: v for k, v in kept.items() if k.startswith("val_")}
    return {
        "train": train, "val": val, "test": test, "best_epoch": best,
        "epochs_run": len(rows), "samples_per_s": round(samples_per_s, 1),
    }


def _write_labels_and_summary(prepared: Prepared, run: RunFolder) -> None:
    if prepared.data.labels is not None:
        run.write_json("labels.json", prepared.data.labels)
    lines: list[str] = []
    prepared.model.summary(print_fn=lambda text, line_break=True: lines.append(text), line_length=100)
    run.write_text("summary.txt", "\n".join(lines) + "\n")


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so the run folder can say `interrupted`."""


def _on_sigterm(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _signals_held():
    """Ignore SIGINT/SIGTERM for the few milliseconds of writing run.json's final status."""
    if not _main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def train(config: Config | str | dict | None, overrides=(), runs_dir=None, console=None, progress: bool = True,
          rich_bar: bool = False, command: str | None = None, resume=None) -> TrainResult:
    """Train a config end to end and return its run folder and final metrics.

    Args:
        config: a YAML path, a dict, or a loaded `Config` (None with `resume`: the run's own).
        overrides: `KEY=VALUE` strings, as `--set` takes them.
        runs_dir: where run folders go (default `runs`, or $DLCLI_RUNS_DIR).
        console: a rich Console for progress (default: stderr).
        progress: report each epoch.
        rich_bar: a live progress bar instead of one line per epoch.
        resume: a run (folder, id or 'latest') to continue in place from its last epoch.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    command = command or " ".join(sys.argv)
    if resume is not None:
        run = RunFolder.find(resume, runs_dir)
        prepared = prepare(config if config is not None else str(run.file("config.yaml")), overrides)
        saved, rows = _resume_state(run, prepared)
    else:
        prepared = prepare(config, overrides)
        saved, rows = None, []
    config, data, model, keras = prepared.config, prepared.data, prepared.model, prepared.keras

    started = time.time()
    if resume is None:
        record = {
            "name": config.name, "status": "running", "ended": None, "duration_s": None,
            "command": command, "seed": config.seed, "pid": os.getpid(), "host": socket.gethostname(),
            "versions": versions(config.runtime.backend), "devices": prepared.choices["devices"],
            "runtime": {k: v for k, v in prepared.choices.items() if k != "devices"},
            "data": {"source": config.data.source, **data.summary()},
            "parameters": parameter_counts(model), "epochs": config.training.epochs, "resumes": [],
        }
        # The folder appears with run.json and config.yaml in it: a crash or kill from here
        # on leaves a folder that says what it was.
        run = RunFolder.create(runs_dir_from(runs_dir), config.name, {"started": now_iso(), **record},
                               {"config.yaml": config.to_yaml()})
        (run.path / "checkpoints").mkdir()
        _write_labels_and_summary(prepared, run)
    else:
        started -= run.record.get("duration_s") or 0  # duration counts every session
        run.write_text("config.yaml", config.to_yaml())
        (run.path / "checkpoints").mkdir(exist_ok=True)
        resumes = run.record.get("resumes", []) + [{
            "time": now_iso(), "from_epoch": len(rows), "epochs": config.training.epochs, "command": command,
            "previous_status": effective_status(run.record),
        }]
        run.update(status="running", ended=None, error=None, pid=os.getpid(), host=socket.gethostname(),
                   epochs=config.training.epochs,
                   runtime={k: v for k, v in prepared.choices.items() if k != "devices"},
                   devices=prepared.choices["devices"], resumes=resumes)

    state = {"rows": list(rows), "epochs_run": len(rows), "diverged": None, "best_epoch": None, "recorder": None}
    initial_epoch = len(rows)
    # Seeded again right before fit, on a fresh run and on a resume alike: Keras's shuffle
    # of in-memory arrays (a random op in its tf.data pipeline) is then a function of the
    # seed alone, so a resumed run sees the data in the same order as an uninterrupted one.
    # (With a seed set, TensorFlow repeats that order each epoch: tensorflow#35682.)
    keras.utils.set_random_seed(config.seed)
    steps = math.ceil(len(data.x_train) / config.training.batch_size)
    reporter = None
    if progress:
        from dlcli.progress import progress_callback

        reporter = progress_callback(keras, console, config.training.epochs, steps, rich_bar)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        callbacks = callbacks_for(prepared, run, state, reporter, saved)
        validation = None
        if data.x_val is not None:
            validation = (data.x_val, targets_for(model, data.y_val, data.n_classes))
        fit_started = time.perf_counter()
        model.fit(
            data.x_train, targets_for(model, data.y_train, data.n_classes),
            validation_data=validation, epochs=config.training.epochs, initial_epoch=initial_epoch,
            batch_size=config.training.batch_size, shuffle=config.training.shuffle,
            callbacks=callbacks, verbose=0,
        )
        fit_seconds = time.perf_counter() - fit_started
        if state["diverged"]:
            kept = (f"epoch {state['diverged'] - 1} is kept in {run.file('checkpoints')}"
                    if state["diverged"] > 1 else "no epoch completed before it")
            raise RunFailed(
                f"loss became NaN/inf at epoch {state['diverged']} ({kept}); "
                "lower compile.optimizer.learning_rate or check the data"
            )
        # The pictures are drawn on a worker thread while the model is scored and saved:
        # TensorFlow releases the GIL in its ops, so the two overlap on a second core.
        best_epoch = state["best_epoch"] or _best_epoch(config, state["rows"])
        predictions = predicted_classes(model, data.x_test) if data.labels is not None else None
        reports = _start(_write_reports, run, config, data, state["rows"], best_epoch, predictions)
        test = model.evaluate(data.x_test, targets_for(model, data.y_test, data.n_classes),
                              batch_size=config.training.batch_size, verbose=0, return_dict=True)
        test = {k: float(v) for k, v in test.items()}
        _save(model.save, run.file("model.keras"))
        samples = len(data.x_train) * (state["epochs_run"] - initial_epoch) / max(fit_seconds, 1e-9)
        metrics = final_metrics(config, state["rows"], test, samples, best_epoch)
        run.write_json("metrics.json", metrics)
        reports.join()
        record = _finish(run, started, "completed")
        return TrainResult(run, metrics, record)
    except (KeyboardInterrupt, _Terminated):
        try:
            if state.get("recorder") is not None:
                state["recorder"].write()  # the last completed epoch, not the half-done one
        except (KeyboardInterrupt, _Terminated):
            pass  # a second Ctrl-C stops at once: the checkpoint on disk is the previous one
        with _signals_held():
            _finish(run, started, "interrupted", error=f"interrupted after {state['epochs_run']} completed epochs")
        raise Interrupted(f"interrupted; the run folder {run.path} keeps {state['epochs_run']} completed epochs "
                          f"(continue with: dlcli train --resume {run.path})") from None
    except RunFailed as exc:
        _finish(run, started, "failed", error=str(exc), failed_epoch=state["diverged"])
        raise
    except ConfigError as exc:
        _finish(run, started, "failed", error=str(exc))
        raise
    except Exception as exc:
        reason = _runtime_reason(exc)
        _finish(run, started, "failed", error=reason)
        raise RunFailed(reason) from exc
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _resume_state(run: RunFolder, prepared: Prepared) -> tuple[dict | None, list[dict]]:
    """Check that only resumable keys changed; load the last good epoch into the model."""
    import yaml

    from dlcli.config import RESUMABLE_KEYS, config_differences

    before = yaml.safe_load(run.file("config.yaml").read_text()) or {}
    changed = [
        key for key in config_differences(before, prepared.config.to_dict())
        if not any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_KEYS)
    ]
    if changed:
        raise ConfigError(Problem(
            "--resume may change only training.epochs and runtime.*; these differ from the run: "
            + ", ".join(changed) + "; start a new run instead", where=str(run.path),
        ))
    if effective_status(run.record) == "running" and run.record.get("pid") != os.getpid():
        raise ConfigError(Problem(f"the run is still being trained by process {run.record['pid']}", where=str(run.path)))
    _remove_temp_files(run)
    saved = run.read_json("checkpoints/state.json")
    last = run.file("checkpoints") / str((saved or {}).get("checkpoint", "-"))
    if not saved or not last.is_file():
        # No completed epoch: start the run cleanly in the same folder.
        run.file("history.csv").unlink(missing_ok=True)
        return None, []
    completed = int(saved["epoch"])
    if completed >= prepared.config.training.epochs:
        raise ConfigError(Problem(
            f"the run already has {completed} epochs; raise the total: --set training.epochs={completed + 10}",
            where=str(run.path),
        ))
    model = prepared.model
    model.optimizer.build(model.trainable_variables)
    model.load_weights(last)
    model.optimizer.learning_rate = saved.get("lr", float(prepared.keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    for variable, value in zip(_seed_states(model), saved.get("rng") or []):
        variable.assign(value)
    # history.csv keeps the rows of completed epochs; a row written after the last
    # checkpoint (a kill between the two) is dropped and trained again.
    rows = [r for r in run.history() if r["epoch"] <= completed]
    _rewrite_history(run, rows)
    return saved, rows


def _remove_temp_files(run: RunFolder) -> None:
    """Temp files a killed process left (`.name.tmp...`): never read, safe to drop."""
    for folder in (run.path, run.file("checkpoints")):
        if folder.is_dir():
            for path in folder.glob(".*tmp*"):
                if path.is_file():
                    path.unlink(missing_ok=True)


def _rewrite_history(run: RunFolder, rows: list[dict]) -> None:
    import csv
    import io

    if not rows:
        run.file("history.csv").unlink(missing_ok=True)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(run.file("history.csv"), buffer.getvalue())


def _write_reports(run: RunFolder, config: Config, data: Dataset, rows: list[dict], best_epoch: int,
                   predictions) -> None:
    """confusion_matrix.csv/.png (classification) and curves.png."""
    if predictions is not None:
        from dlcli.reports import write_confusion

        write_confusion(run, "confusion_matrix", data.y_test, predictions, data.labels,
                        plot=config.output.plots, title=f"{run.id}: test")
    if config.output.plots:
        from dlcli.plots import plot_curves

        plot_curves(run.file("curves.png"), rows, best_epoch, config.name)


class _Worker(threading.Thread):
    """A thread whose exception is raised again by join()."""

    def __init__(self, target, *args):
        super().__init__(daemon=True)
        self.work, self.args, self.error = target, args, None

    def run(self):
        try:
            self.work(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.error = exc

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            raise self.error


def _start(target, *args) -> _Worker:
    worker = _Worker(target, *args)
    worker.start()
    return worker


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _runtime_reason(exc: Exception) -> str:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if isinstance(exc, MemoryError) or "ResourceExhausted" in name or "out of memory" in text.lower():
        return f"out of memory ({text}); lower training.batch_size or the model's size"
    if isinstance(exc, OSError):
        return f"I/O error: {exc.strerror or text} ({exc.filename or ''})"
    return f"{name}: {text}"


def _finish(run: RunFolder, started: float, status: str, **extra) -> dict:
    try:
        return run.update(status=status, ended=now_iso(), duration_s=round(time.time() - started, 3), **extra)
    except OSError:
        return {}


__all__ = ["Prepared", "TrainResult", "atomic_write", "prepare", "train"]
