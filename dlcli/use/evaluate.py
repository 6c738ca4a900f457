"""Evaluate and predict with a run's saved model.

The model is loaded with Keras's `safe_mode` (a crafted `.keras` file cannot run code),
the run's resolved config says where its data is, and the seeded split makes `--split
val` / `train` the very samples the run used. Each evaluation is appended to the run's
`evaluations.jsonl`.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcli.config.load import load_config
from dlcli.config.sources import MEDIA_SOURCES
from dlcli.data.dataset import load_data
from dlcli.data.inputs import media_inputs, read_features_file, read_labeled_file
from dlcli.data.sources.datafile import changed_files
from dlcli.errors import ConfigError, Problem, RunFailed, did_you_mean, first_line, io_error
from dlcli.files import csv_text
from dlcli.model.inputs import without_vectorizer
from dlcli.model.outputs import class_probabilities, score, targets_for
from dlcli.runs.reports import write_confusion
from dlcli.runs.runfolder import RunFolder, now_iso
from dlcli.runtime import compat
from dlcli.runtime.backend import backend_for
from dlcli.runtime.keras_import import import_keras, let_tensorflow_in
from dlcli.training import track
from dlcli.training.signals import stop_after_batch
from dlcli.use.saved import open_run, run_labels, run_preprocessing


def load_run_model(run: RunFolder, backend: str | None = None):
    """(keras, model, config, run.json) of a finished run, on `backend` (default: the
    config's `runtime.backend`, `auto` picking among those installed): a model trained on
    one backend loads on any."""
    record = run.record
    if record.data.input_shape is None:
        raise ConfigError(
            Problem(
                "run.json is missing or damaged (no data section); retrain the run",
                where=str(run.file("run.json")),
            )
        )
    config = load_config(run.file("config.yaml"))
    chosen, _ = backend_for(
        backend or config.runtime.backend, [layer.type for layer in config.model.layers]
    )
    config.runtime.backend = chosen
    keras = import_keras(
        chosen, "--backend" if backend is not None else str(run.file("config.yaml"))
    )
    import dlcli.data.tables.encoder  # noqa: F401 - registers the layer a table's model starts with

    path = run.file("model.keras")
    if not path.is_file():
        status = record.status
        raise ConfigError(
            Problem(
                f"the run has no model.keras (status: {status}); train it to completion first",
                where=str(run.path),
            )
        )
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            Problem(
                "is not a .keras archive (corrupted, or not written by Keras); retrain the run or restore the file",
                where=str(path),
            )
        )
    if record.data.source == "text":  # its TextVectorization runs on TensorFlow's string ops
        let_tensorflow_in()
    try:
        model = keras.saving.load_model(
            path, safe_mode=True, custom_objects=portable_optimizers(keras)
        )
    except Exception as exc:  # noqa: BLE001 - a foreign file fails in many ways
        raise ConfigError(
            Problem(f"not a model dlcli can load safely ({first_line(exc)[:200]})", where=str(path))
        ) from None
    model, _ = without_vectorizer(keras, model)  # text: vectorized outside, on every backend
    return keras, model, config, record


def portable_optimizers(keras) -> dict:
    """Keras's optimizer classes by name, for loading a model saved on another backend: on
    torch, Keras saves its optimizer under the torch backend's module, which loading on
    TensorFlow would import, and torch and TensorFlow in one process abort it (an LLVM
    'registered more than once' error that no Python code can catch)."""
    base = keras.optimizers.Optimizer
    return {
        name: value
        for name, value in vars(keras.optimizers).items()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    }


def _quietly_stoppable(model):
    """A Ctrl-C/SIGTERM in Keras's evaluate/predict ends it after the batch and is raised
    after it (`dlcli.training.signals.stop_after_batch`), never inside a backend call."""

    def stop():
        compat.stop_inference(model)

    return stop_after_batch(stop)


def evaluate(
    run=None,
    split: str = "test",
    data: str | None = None,
    runs_dir=None,
    fail_under=(),
    fail_over=(),
    backend: str | None = None,
    allow_changed_data: bool = False,
) -> dict:
    """Score a run's model on a split of its data, or on a CSV/NPZ file; record it.

    A split is made from the run's data files with the run's own preprocessing; a file
    whose SHA-256 is not the one run.json records is refused (its split is not the run's),
    unless `allow_changed_data`. Gates name metrics that must exist (a ConfigError
    otherwise, with nothing recorded). Returns `{"time", "split" or "data", "metrics",
    "samples"}` (as in evaluations.jsonl), plus `gate_failures` when gates were given.
    """
    if data is None and split not in ("train", "val", "test"):
        raise ConfigError(Problem(f"--split must be train, val or test, got {split!r}"))
    run = open_run(run, runs_dir)
    _, model, config, record = load_run_model(run, backend)
    summary = record.data
    labels = run_labels(run, record, model)
    entry = {"time": now_iso(), "backend": config.runtime.backend}
    if data is not None and summary.source in MEDIA_SOURCES:
        text = run_preprocessing(run, record)
        split_data, _, skipped = media_inputs(str(data), config, summary, True, labels, text)
        entry["data"] = str(Path(data).resolve())
        if skipped:
            entry["skipped"] = skipped
            entry["warning"] = skipped_warning(skipped, str(data))
    elif data is not None:
        preprocessing = run_preprocessing(run, record)
        split_data, unseen = read_labeled_file(str(data), config, summary, labels, preprocessing)
        entry["data"] = str(Path(data).resolve())
        if unseen:
            entry["unseen"] = unseen
            entry["warning"] = preprocessing.describe_unseen(unseen, str(data))
    else:
        changed = changed_files(summary.files)
        if changed and not allow_changed_data:
            raise _changed(run, split, changed)
        dataset = load_data(config, fitted=run_preprocessing(run, record))
        if summary.source in MEDIA_SOURCES:  # a folder's digest is known once it is read
            changed = [p for p, d in dataset.files.items() if summary.files.get(p, d) != d]
            if changed and not allow_changed_data:
                raise _changed(run, split, changed)
        if changed:
            entry["warning"] = (
                f"{changed[0]} changed since the run was trained: scored a new split of it with "
                "the run's own preprocessing (--allow-changed-data)"
            )
            entry["data_changed"] = changed
        split_data = dataset.split(split)
        entry["split"] = split
    n_classes = len(labels) if labels else 0
    with _quietly_stoppable(model) as stop:
        metrics, predictions = score(
            model,
            split_data,
            lambda y: targets_for(model, y, n_classes),
            bool(labels),
            stop.raise_if_requested,
        )
    entry["metrics"] = {k: float(v) for k, v in metrics.items()}
    entry["samples"] = len(split_data)
    failures = check_gates(entry["metrics"], fail_under, fail_over)
    try:
        if labels:
            suffix = "" if entry.get("split") == "test" else f"_{entry.get('split') or 'data'}"
            entry["confusion_matrix"] = write_confusion(
                run,
                f"confusion_matrix{suffix}",
                split_data.y,
                predictions,
                labels,
                plot=config.output.plots,
                title=f"{run.id}: {entry.get('split') or Path(data).name}",
            )
        if error := track.log_evaluation(run, record, config, entry):
            entry["mlflow_error"] = error
        run.append_evaluation(entry)
    except OSError as exc:
        raise RunFailed(
            f"the evaluation could not be recorded: {io_error(exc)}", payload=entry
        ) from None
    if fail_under or fail_over:
        entry["gate_failures"] = failures
    return entry


def _changed(run: RunFolder, split: str, changed: list[str]) -> ConfigError:
    return ConfigError(
        Problem(
            f"changed since run {run.id} was trained (its SHA-256 is not the one run.json records), so the "
            f"run's {split} split cannot be made from it; restore the file, score all of it with --data "
            f"{changed[0]}, or split it anew with --allow-changed-data",
            where=changed[0],
        )
    )


def skipped_warning(skipped: list[dict], path: str) -> str:
    """One line for the files `on_bad_file: skip` left out."""
    first = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f"{path}: skipped {len(skipped)} file(s) that could not be read: {first['file']} ({first['reason']}){more}"


def parse_gate(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise ConfigError(
            Problem("expected METRIC=VALUE, such as accuracy=0.95", where=f"gate {text}")
        ) from None


def check_gates(metrics: dict, fail_under=(), fail_over=()) -> list[str]:
    """Gate failures as sentences; a ConfigError for a metric the run does not have."""
    failures = []
    for texts, under in ((fail_under, True), (fail_over, False)):
        for text in texts:
            name, bound = parse_gate(text)
            if name not in metrics:
                flag = "--fail-under" if under else "--fail-over"
                raise ConfigError(
                    Problem(
                        f"no metric '{name}'{did_you_mean(name, metrics)}; this run has: {', '.join(metrics)}",
                        where=f"{flag} {text}",
                    )
                )
            value = metrics[name]
            if (
                (under and not value >= bound)
                or (not under and not value <= bound)
                or not math.isfinite(value)
            ):
                failures.append(f"{name} {value:.4g} is {'under' if under else 'over'} {bound:g}")
    return failures


@dataclass
class Predictions:
    """`predict`'s answer: one dict per sample, and what the input held that training never
    saw (`unseen`: column -> value -> rows), with `warning` the line that says so."""

    rows: list[dict]
    unseen: dict = field(default_factory=dict)
    warning: str | None = None


def predict(
    run, input_path: str, proba: bool = False, runs_dir=None, backend: str | None = None
) -> Predictions:
    """Predictions, one dict per sample: `prediction` (the original label, or the value for
    regression) and, with `proba`, `proba_<label>` per class. `to_csv` writes them."""
    run = open_run(run, runs_dir)
    _, model, config, record = load_run_model(run, backend)
    summary = record.data
    labels = run_labels(run, record, model)
    if summary.source in MEDIA_SOURCES:
        text = run_preprocessing(run, record)
        return _predict_files(model, config, summary, labels, str(input_path), proba, text)
    preprocessing = run_preprocessing(run, record)
    x, unseen = read_features_file(str(input_path), summary, preprocessing)
    warning = preprocessing.describe_unseen(unseen, str(input_path)) if preprocessing else None
    with _quietly_stoppable(model) as stop:
        outputs = np.asarray(
            model.predict(x, batch_size=max(256, config.training.batch_size), verbose=0)
        )
        stop.raise_if_requested()
    return Predictions(_prediction_rows(model, outputs, labels, proba), unseen, warning)


def _predict_files(
    model, config, summary, labels, path: str, proba: bool, text=None
) -> Predictions:
    """Predictions for media files (one, a folder, a table of paths; for text, a table of
    documents), a batch at a time, each row led by its file (a table's documents: its row)."""
    split, files, skipped = media_inputs(path, config, summary, text=text)
    lead = "row" if files and isinstance(files[0], int) else "file"
    rows, at = [], 0
    with _quietly_stoppable(model) as stop:
        for x in split.feature_batches(max(64, config.training.batch_size)):
            outputs = np.asarray(model.predict(x, batch_size=len(x), verbose=0))
            stop.raise_if_requested()
            for row in _prediction_rows(model, outputs, labels, proba):
                rows.append({lead: files[at], **row})
                at += 1
    warning = skipped_warning(skipped, path) if skipped else None
    return Predictions(rows, {}, warning)


def _prediction_rows(model, outputs: np.ndarray, labels: list | None, proba: bool) -> list[dict]:
    """One dict per sample: `prediction` (and `proba_<label>` with `proba`), or the values."""
    if labels is None:  # regression
        outputs = outputs.reshape(len(outputs), -1)
        names = (
            ["prediction"]
            if outputs.shape[-1] == 1
            else [f"prediction_{i}" for i in range(outputs.shape[-1])]
        )
        return [dict(zip(names, map(float, row))) for row in outputs]
    rows = []
    for row in class_probabilities(model, outputs):
        entry = {"prediction": labels[int(np.argmax(row))]}
        if proba:
            entry.update({f"proba_{label}": round(float(p), 6) for label, p in zip(labels, row)})
        rows.append(entry)
    return rows


def to_csv(rows: list[dict]) -> str:
    """Prediction rows as CSV text (header from the first row)."""
    return csv_text(rows) if rows else ""
