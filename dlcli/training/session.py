"""Training: config -> data -> model -> fit -> score -> run folder.

`prepare` (`dlcli.training.prepare`) does everything up to a compiled model; `train` then
reads as its steps: open (or resume) the run folder, fit, score on the test split, write
the files of the contract, finish. Whatever happens after the folder exists,
run.json ends as completed, failed (with the error) or interrupted.

Where the other concerns live: pre-flight checks `dlcli.model.checks`, callbacks and their state
`dlcli.training.callbacks`, the checkpoint format `dlcli.training.checkpoint`, the resume rules
`dlcli.training.resume`, signals `dlcli.training.signals`, metric direction and metrics.json
`dlcli.runs.metrics`, pictures `dlcli.runs.reports`, the baselines scored beside the model
`dlcli.training.baselines`.

Example:
    >>> result = train("configs/digits_mlp.yaml", overrides=["training.epochs=3"])
    >>> result.metrics["test"]["accuracy"]
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from dlcli.config.schema import Config
from dlcli.errors import ConfigError, Interrupted, RunFailed, first_line, io_error
from dlcli.model.build import build_model, parameter_counts, target_scale
from dlcli.model.inputs import saved_form
from dlcli.model.outputs import score, targets_for
from dlcli.runs import metrics
from dlcli.runs.record import DataRecord, RunRecord
from dlcli.runs.runfolder import RunFolder, now_iso, runs_dir_from
from dlcli.runtime import compat, compile_cache
from dlcli.runtime.environment import versions
from dlcli.tracking.tracker import Tracker
from dlcli.tracking.where import masked_words
from dlcli.training import baselines, class_weight, resume, track
from dlcli.training import distributed as processes
from dlcli.training.distributed import Group
from dlcli.training.prepare import Prepared, as_config, check_processes, prepare, written_config
from dlcli.training.signals import Terminated, held, signals_raise, stop_after_batch


@dataclass
class TrainResult:
    run: RunFolder
    metrics: dict
    record: RunRecord | None  # run.json as the run ended


@dataclass
class Session:
    """One `train` call on its run folder: where the run stands before fit."""

    prepared: Prepared
    run: RunFolder
    rows: list[dict]
    saved: dict | None
    started: float  # time.time() of the call, less earlier sessions' duration on resume
    finishing: bool = False  # resumed after its last epoch: only the final phase is left
    tracker: Tracker | None = None  # its MLflow run (`dlcli.training.track`)

    @property
    def initial_epoch(self) -> int:
        return len(self.rows)


def train(
    config: Config | str | dict | None,
    overrides=(),
    runs_dir=None,
    console=None,
    progress: bool = True,
    rich_bar: bool = False,
    command: str | None = None,
    resume=None,
    group: Group | None = None,
) -> TrainResult:
    """Train a config end to end and return its run folder and final metrics.

    Args:
        config: a YAML path, a dict, or a loaded `Config` (None with `resume`: the run's own).
        overrides: `KEY=VALUE` strings, as `--set` takes them.
        runs_dir: where run folders go (default `runs`, or $DLCLI_RUNS_DIR).
        console: a rich Console for progress (default: stderr).
        progress: report each epoch.
        rich_bar: a live progress bar instead of one line per epoch.
        command: the command line run.json records (default: this process's).
        resume: a run (folder, id or 'latest') to continue in place from its last epoch.
        group: this process's place in a multi-process run: every process calls `train`;
            process 0 writes the run folder, the others a scratch copy removed at the end.
    """
    group = group or Group()
    if not group.several:
        return _train(
            config, overrides, runs_dir, console, progress, rich_bar, command, resume, group
        )
    if config is not None:  # before waiting for the others: a config that cannot run this way
        config = as_config(config, overrides)
        overrides = ()
        check_processes(config, group)
    processes.join(group)
    processes.check_same_config(
        group, config, overrides
    )  # before any model: a mismatch would hang a step
    scratch = None if group.leads else processes.scratch_folder()
    try:
        if resume is not None:  # the followers get a copy of the leader's folder
            found = RunFolder.find(resume, runs_dir).path if group.leads else None
            resume = str(processes.handed_folder(group, found, scratch))
        result = _train(
            config,
            overrides,
            scratch or runs_dir,
            console,
            progress,
            rich_bar,
            command,
            resume,
            group,
        )
        processes.finish()  # every process is done: leave the runtime together
        return result
    finally:
        if scratch is not None:
            processes.remove_scratch(scratch)


def _train(
    config,
    overrides,
    runs_dir,
    console,
    progress: bool,
    rich_bar: bool,
    command,
    resume,
    group: Group,
) -> TrainResult:
    started = time.time()
    command = masked_words(command or " ".join(sys.argv))  # no tracking password in run.json
    # Preparing may take long and holds nothing on disk: Ctrl-C there ends the program at
    # once (dlcli.cli.program). The folder is claimed with signals raising, and a signal that
    # comes while it is being claimed waits until the run can be marked interrupted.
    claim = (
        _resume(resume, config, overrides, runs_dir, command, started, group)
        if resume is not None
        else _open(config, overrides, runs_dir, command, started, group)
    )
    session = recorder = None
    callbacks: list = []
    with signals_raise():  # also while an interrupted run writes its checkpoint and status
        try:
            with stop_after_batch() as claiming:
                session = claim()
            claiming.raise_if_requested()
            session.tracker = track.start(session)
            model = session.prepared.model
            from dlcli.training.callbacks import callbacks_for  # Keras is up: prepare imported it

            reporter = (
                _reporter(session, console, rich_bar)
                if not session.finishing and progress
                else None
            )
            if resume is None:
                _describe(session)
            # Several processes checkpoint every epoch: a save gathers the weights from
            # all of them, so they must decide alike (not by their own clocks).
            callbacks, recorder = callbacks_for(
                session.prepared.config,
                session.run,
                session.rows,
                session.saved,
                reporter,
                every_epoch=group.several,
                tracker=session.tracker,
            )
            # From fit to the last file, a first Ctrl-C/SIGTERM asks Keras to stop after the
            # batch in progress and is raised between steps (dlcli.training.signals).
            with stop_after_batch(lambda: _stop(model)) as stop:
                # The baselines fit on a worker thread meanwhile (one core's share at most).
                pending = baselines.start(session.prepared)
                fit_seconds = _fit(session, callbacks, recorder, stop)
                if group.several:  # score and save without collectives, in each process alike
                    _go_local(session)
                return _score_and_write(session, recorder, fit_seconds, stop, pending)
        except (KeyboardInterrupt, Terminated):
            if (
                session is None
            ):  # a second signal while claiming: nothing of this run is on disk yet
                raise
            _interrupted(session, recorder)
        except Exception as exc:
            if (
                session is None
            ):  # claiming the folder failed: RunFolder's own error, nothing to mark
                raise
            if isinstance(exc, RunFailed):
                _finish(
                    session,
                    "failed",
                    error=str(exc),
                    failed_epoch=recorder.diverged if recorder else None,
                )
                raise
            if isinstance(exc, ConfigError):
                _finish(session, "failed", error=str(exc))
                raise
            if _signalled(exc):  # a backend scope that re-raised its own error over Ctrl-C
                _interrupted(session, recorder)
            reason = _runtime_reason(exc)
            _finish(session, "failed", error=reason)
            raise RunFailed(reason) from exc
        finally:
            if callbacks:  # TensorBoard's worker writes what it holds (dlcli.runs.board)
                from dlcli.training.callbacks import close_boards

                close_boards(callbacks)
            try:
                if session is not None:
                    session.run.remove_temp_files()
            except (OSError, ConfigError):
                pass  # best effort: the error in flight is the one to report
            if session is not None:
                session.run.unlock()


def _interrupted(session: Session, recorder) -> None:
    """Write the last completed epoch, mark the run interrupted and raise `Interrupted`."""
    try:
        if recorder is not None:
            recorder.write()  # the last completed epoch, not the half-done one
    except (KeyboardInterrupt, Terminated, Exception):  # noqa: BLE001, S110
        pass  # a second Ctrl-C, a full disk, a save cut short: the checkpoint on disk stands
    with held():
        kept = _checkpointed(session.run)
        _finish(session, "interrupted", error=f"interrupted after {kept} completed epochs")
    keeps = (
        f"keeps {kept} completed epoch{'s' if kept != 1 else ''}"
        if kept
        else "holds no completed epoch yet"
    )
    raise Interrupted(
        f"interrupted; the run folder {session.run.path} {keeps} "
        f"(continue with: dlcli train --resume {session.run.path})"
    ) from None


def _signalled(exc: BaseException) -> bool:
    """Whether a Ctrl-C/SIGTERM is behind `exc` (raised while handling it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


def _stop(model) -> None:
    """Ask Keras to end fit, evaluate or predict after the batch in progress."""
    model.stop_training = True
    compat.stop_inference(model)


def _checkpointed(run: RunFolder) -> int:
    """The epoch in the run's checkpoint (0: none): what `--resume` continues from."""
    from dlcli.training import checkpoint

    saved = checkpoint.read(run)
    return int(saved["epoch"]) if saved else 0


def _open(
    config, overrides, runs_dir, command: str, started: float, group: Group
) -> Callable[[], Session]:
    """Prepare; the function returned claims a new run folder that appears with run.json and
    config.yaml in it: a crash or kill from then on leaves a folder that says what it was."""
    prepared = prepare(config, overrides, group, tracks=True)
    config, data, model = prepared.config, prepared.data, prepared.model
    record = RunRecord(
        name=config.name,
        status="running",
        started=now_iso(),
        command=command,
        seed=config.seed,
        pid=os.getpid(),
        host=socket.gethostname(),
        versions=versions(config.runtime.backend),
        **_runtime_record(prepared),
        data=DataRecord.from_json(
            {
                "source": config.data.source,
                **data.summary(),
                "target_scale": target_scale(config, data),
            }
        ),
        parameters=parameter_counts(model),
        epochs=config.training.epochs,
        timings=dict(prepared.timings),
        class_weight=class_weight.recorded(prepared.class_weight, data.labels),
    )

    def claim() -> Session:
        run = RunFolder.create(
            runs_dir_from(runs_dir), config.name, record, {"config.yaml": written_config(prepared)}
        )
        if group.leads:
            processes.note("run", str(run.path))
        return Session(prepared, run, [], None, started)

    return claim


def _describe(session: Session) -> None:
    """A new run's checkpoints/ folder, labels.json, preprocessing.json and summary.txt."""
    run, data = session.run, session.prepared.data
    run.folder("checkpoints")
    if data.labels is not None:
        run.write_json("labels.json", data.labels)
    fitted = data.preprocessing or data.text  # a table's encoding, or text's vocabulary
    if fitted is not None:
        run.write_json("preprocessing.json", fitted.to_json())
    lines: list[str] = []
    session.prepared.model.summary(
        print_fn=lambda text, line_break=True: lines.append(text), line_length=100
    )
    run.write_text("summary.txt", "\n".join(lines) + "\n")


def _resume(
    ref, config, overrides, runs_dir, command: str, started: float, group: Group
) -> Callable[[], Session]:
    """Prepare the run's config (or the one given), check the resume rules and load the last
    completed epoch; the function returned marks the run as running again."""
    run = RunFolder.find(ref, runs_dir)
    run.lock()  # before anything is read: a second resume of this run stops here
    if group.leads:
        processes.note("run", str(run.path))
    resume.check_data(run)
    prepared = prepare(
        config if config is not None else str(run.file("config.yaml")), overrides, group, True
    )
    config = prepared.config
    resume.check(run, config)
    saved, rows, finishing = resume.restore(run, config, prepared.model, prepared.keras)

    def claim() -> Session:
        run.write_text("config.yaml", written_config(prepared))
        run.folder("checkpoints")
        record = run.record
        resumes = [
            *record.resumes,
            {
                "time": now_iso(),
                "from_epoch": len(rows),
                "epochs": config.training.epochs,
                "command": command,
                "previous_status": record.effective_status,
                "backend": config.runtime.backend,
            },
        ]
        run.update(
            status="running",
            ended=None,
            error=None,
            pid=os.getpid(),
            host=socket.gethostname(),
            epochs=config.training.epochs,
            resumes=resumes,
            timings=dict(prepared.timings),
            **_runtime_record(prepared),
        )
        earlier = (
            record.duration_s if record.duration_s is not None and record.duration_s >= 0 else 0
        )
        return Session(prepared, run, rows, saved, started - earlier, finishing)

    return claim


def _runtime_record(prepared: Prepared) -> dict:
    choices, group = prepared.choices, prepared.group
    record = {
        "devices": choices.devices,
        "runtime": {**choices.record(), **(prepared.share.record() if prepared.share else {})},
    }
    if group.several:
        record["processes"] = group.record(choices.devices)
    return record


def _reporter(session: Session, console, rich_bar: bool):
    from rich.console import Console

    from dlcli.training.progress import progress_callback

    config = session.prepared.config
    return progress_callback(
        session.prepared.keras,
        console or Console(stderr=True),
        config.training.epochs,
        session.prepared.data.train.steps(config.training.batch_size),
        rich_bar,
    )


def _labels(prepared: Prepared):
    """Targets -> the form the model's loss takes."""
    return lambda y: targets_for(prepared.model, y, prepared.data.n_classes)


def _fit(session: Session, callbacks: list, recorder, stop) -> float:
    """model.fit from the session's epoch; the seconds it took. NaN/inf loss is RunFailed; a
    Ctrl-C or SIGTERM (`stop`) ends fit after its batch and is raised here. A run resumed
    after its last epoch fits no epoch: the callbacks still begin and end (early stopping
    puts its best weights back)."""
    prepared = session.prepared
    config, model, keras = prepared.config, prepared.model, prepared.keras
    labels = _labels(prepared)
    # Seeded again right before fit, on a fresh run and on a resume alike: Keras's shuffle
    # of in-memory arrays (a random op in its tf.data pipeline) is then a function of the
    # seed alone, so a resumed run sees the data in the same order as an uninterrupted one.
    # (With a seed set, TensorFlow repeats that order each epoch: tensorflow#35682.)
    keras.utils.set_random_seed(config.seed)
    fit_started = time.perf_counter()
    recorder.stop = stop
    model.fit(
        **_fit_inputs(session, labels),
        epochs=session.initial_epoch if session.finishing else config.training.epochs,
        initial_epoch=session.initial_epoch,
        shuffle=config.training.shuffle,
        callbacks=callbacks,
        verbose=0,
    )
    recorder.stop = None
    stop.raise_if_requested()
    seconds = time.perf_counter() - fit_started
    if recorder.diverged:
        kept = (
            f"epoch {recorder.diverged - 1} is kept in {session.run.file('checkpoints')}"
            if recorder.diverged > 1
            else "no epoch completed before it"
        )
        raise RunFailed(
            f"loss became NaN/inf at epoch {recorder.diverged} ({kept}); "
            "lower compile.optimizer.learning_rate or check the data"
        )
    return seconds


def _fit_inputs(session: Session, labels) -> dict:
    """model.fit's data arguments: the splits; in a multi-process run, this process's share
    of each, in per-process batches (`dlcli.training.distributed`). The training samples
    carry their class's weight (`training.class_weight`); the validation ones do not."""
    prepared = session.prepared
    config, data, group, share = prepared.config, prepared.data, prepared.group, prepared.share
    weights = class_weight.sample_weights(prepared.class_weight)
    if share is None:
        return {
            **data.train.keras_inputs(labels, config.training.batch_size, weights),
            "validation_data": data.val.validation_data(labels) if data.val is not None else None,
        }
    batch, devices = share.process_batch_size, share.local_devices

    def share(split, shuffle, weights=None):
        part = split.shard(group.index, group.count, devices)
        epoch = session.initial_epoch
        return processes.batches(part, labels, batch, shuffle, config.seed, epoch, weights)

    return {
        "x": share(data.train, config.training.shuffle, weights),
        "validation_data": share(data.val, False) if data.val is not None else None,
    }


def _go_local(session: Session) -> None:
    """Swap the trained, distributed model for a one-process copy (`processes.local_model`)."""
    prepared = session.prepared
    local = prepared.choices.on_one_process()
    prepared.model = processes.local_model(
        prepared.model, lambda: build_model(prepared.config, prepared.data, prepared.keras, local)
    )


def _score_and_write(
    session: Session, recorder, fit_seconds: float, stop, pending: baselines.Pending
) -> TrainResult:
    """Score the kept model on the test split and write model.keras, metrics.json and the
    reports (drawn on a worker thread meanwhile); then finish the run as completed. A stop
    request (`stop`) is raised between the scoring steps; once the writing starts, the run
    completes."""
    from dlcli.runs.reports import Background, write_run_reports

    prepared, run = session.prepared, session.run
    config, data, model = prepared.config, prepared.data, prepared.model
    best = recorder.best_epoch or _best_epoch(config, recorder.rows, metrics.directions(model))
    scored, predictions = score(
        model, data.test, _labels(prepared), data.labels is not None, stop.raise_if_requested
    )
    reports = Background(
        write_run_reports,
        run,
        recorder.rows,
        best,
        config.name,
        config.output.plots,
        y_test=data.test.y,
        predictions=predictions,
        labels=data.labels,
    )
    run.save("model.keras", saved_form(session.prepared.keras, model, data.text).save)
    found, baselines_s = pending.scores()
    es = config.training.early_stopping
    kept_epoch = (
        best
        if es is not None and es.restore_best_weights
        else (recorder.rows[-1]["epoch"] if recorder.rows else 0)
    )
    trained = len(data.train) * (recorder.epochs_run - session.initial_epoch)
    if session.finishing:  # nothing trained now: the speed of the epochs in history.csv
        trained = len(data.train) * len(recorder.rows)
        fit_seconds = sum(float(r.get("epoch_time_s") or 0) for r in recorder.rows)
    result = metrics.final_metrics(
        recorder.rows,
        {k: float(v) for k, v in scored.items()},
        trained / max(fit_seconds, 1e-9),
        best,
        kept_epoch,
        found,
    )
    run.write_json("metrics.json", result)
    reports.join()
    timings = {**run.record.timings, **({"baselines_s": baselines_s} if found else {})}
    record = _finish(session, "completed", timings=timings)
    return TrainResult(run, result, record)


def _best_epoch(config: Config, rows: list[dict], known: dict) -> int:
    """The best epoch by early stopping's monitor (val_loss, or loss without validation)."""
    es = config.training.early_stopping
    monitor = es.monitor if es else ("val_loss" if rows and "val_loss" in rows[0] else "loss")
    mode = es.mode if es is not None else "auto"
    return metrics.best_epoch(
        rows, monitor, metrics.direction(monitor, known) if mode == "auto" else mode
    )


def _runtime_reason(exc: Exception) -> str:
    name, text = type(exc).__name__, first_line(exc)
    if (peer := processes.peer_failure(exc)) is not None:
        return peer
    if (
        isinstance(exc, MemoryError)
        or "ResourceExhausted" in name
        or "out of memory" in text.lower()
    ):
        return f"out of memory ({text}); lower training.batch_size or the model's size"
    if isinstance(exc, OSError):
        return io_error(exc)
    return f"{name}: {text}"


def _finish(session: Session, status: str, **extra) -> RunRecord | None:
    """run.json's final status, duration (data loading included) and metric directions."""
    try:
        directions = metrics.directions(session.prepared.model)
    except Exception:  # noqa: BLE001 - a model that failed mid-build: record the rest
        directions = {}
    cache = compile_cache.record()  # how much of the compiling the JAX cache saved
    if cache is not None:
        extra["compile_cache"] = cache
    if session.tracker is not None:
        extra["mlflow"] = session.tracker.record()
    try:
        record = session.run.update(
            status=status,
            ended=now_iso(),
            duration_s=round(time.time() - session.started, 3),
            metric_directions=directions,
            **extra,
        )
        return track.finish(session, status, record)
    except (
        OSError,
        ConfigError,
    ):  # a full disk, a read-only or tampered folder: report the error in flight
        return None


__all__ = ["Prepared", "TrainResult", "prepare", "train"]
