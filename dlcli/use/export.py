"""`dlcli export`: deployable copies of a run's model, each proven to compute what the model
computes.

Every copy is made from the run's `model.keras` loaded on TensorFlow, whatever backend
trained it: the `.keras` file is backend-neutral (dlcli's own table layer is written with
`keras.ops`), and TensorFlow is the one backend from which Keras reaches all of SavedModel,
ONNX (tf2onnx) and LiteRT. The JAX routes (jax2tf) have broken across JAX releases and torch
loses dynamic shapes in LiteRT, so dlcli does not take them.

Each copy is then loaded back in its own runtime (TensorFlow's SavedModel loader,
onnxruntime, the LiteRT interpreter, Keras) and fed the run's test split; `exports.json`
records what it takes, how far its outputs are from the model's and how fast it answers.

Example:
    >>> report = export_run("latest", formats=["onnx"])
    >>> report["formats"]["onnx"]["max_abs_diff"] < 1e-4
    True
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.errors import ConfigError, Problem, RunFailed, did_you_mean, first_line, io_error
from dlcli.runs.runfolder import now_iso
from dlcli.use.export_formats import (
    FORMATS,
    INDICES,
    INSTALL,
    RAW,
    TABLE_WITH_TEXT,
    TAKES_RAW_TEXT,
    Format,
    RawImages,
    RawTable,
    RawText,
    precision_of,
    rebuilt,
    without_augmentation,
)
from dlcli.use.export_safety import build_folder, checked_targets, replace_folder, written

TOLERANCE = 1e-4  # max |copy - model| for float32 models ...
LOOSE_TOLERANCE = 1e-2  # ... for mixed precision, and LiteRT (its kernels reorder float sums);
# both times max(1, the largest |output|): float32 holds 7 digits, so a regression predicting
# values near 1000 differs by ~1e-4 between two correct float32 runtimes
AGREEMENT = 0.999  # the least share of equal predicted classes
MAX_ROWS = 100_000  # the test rows a copy is checked on (a streamed test split may be larger)
LATENCY_BATCHES = (1, 256)


# ---------------------------------------------------------------------------- checking


def outputs_of(run: Callable, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(run(x[i : i + batch]), dtype="float64").reshape(len(x[i : i + batch]), -1)
            for i in range(0, len(x), batch)
        ]
    )


def latency_ms(
    run: Callable, x: np.ndarray, batch: int, budget_s: float = 0.15, most: int = 50
) -> float:
    """Median milliseconds per sample of `run` on batches of `batch` rows (after one call
    that warms it up), over at most `most` calls or `budget_s` seconds."""
    rows = np.resize(x, (batch, *x.shape[1:])).astype(x.dtype)
    run(rows)
    times, spent = [], 0.0
    while len(times) < 3 or (spent < budget_s and len(times) < most):
        started = time.perf_counter()
        run(rows)
        took = time.perf_counter() - started
        times.append(took)
        spent += took
    return round(1000 * statistics.median(times) / batch, 6)


def compare(reference: np.ndarray, outputs: np.ndarray, classes: Callable | None) -> dict:
    if outputs.shape != reference.shape:
        return {
            "max_abs_diff": None,
            "agreement": None,
            "error": f"outputs of shape {list(outputs.shape)}, the model's are {list(reference.shape)}",
        }
    diff = float(np.max(np.abs(outputs - reference))) if reference.size else 0.0
    agreement = (
        float(np.mean(classes(outputs) == classes(reference)))
        if classes and len(reference)
        else None
    )
    return {"max_abs_diff": diff if np.isfinite(diff) else None, "agreement": agreement}


# ---------------------------------------------------------------------------- the command


def chosen_formats(requested) -> tuple[list[Format], dict[str, str]]:
    """(formats to make, {format: why it is skipped}): the requested ones, each of which must
    be makeable here (a ConfigError naming the install otherwise), or every makeable one."""
    if requested:
        chosen = []
        for name in dict.fromkeys(requested):
            if name not in FORMATS:
                raise ConfigError(
                    Problem(
                        f"no export format '{name}'{did_you_mean(name, FORMATS)}; "
                        f"choose from {', '.join(FORMATS)}",
                        where="--format",
                    )
                )
            missing = FORMATS[name].missing()
            if missing:
                raise ConfigError(
                    Problem(
                        f"{name} needs {', '.join(missing)}, which is not installed: {INSTALL}",
                        where="--format",
                    )
                )
            chosen.append(FORMATS[name])
        return chosen, {}
    missing = {f.name: f.missing() for f in FORMATS.values()}
    skipped = {
        name: f"needs {', '.join(lacking)}: {INSTALL}"
        for name, lacking in missing.items()
        if lacking
    }
    return [f for f in FORMATS.values() if not missing[f.name]], skipped


def _size(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def export_run(
    run=None, formats=(), output=None, runs_dir=None, progress: Callable[[str], None] | None = None
) -> dict:
    """Write the copies, check each against the model on the test split and record them in
    `exports.json` (in the run folder, or `output`). Returns that record; a copy that fails its
    check is marked `failed` there and named in `report["failed"]` (`failure_line` says why).
    """
    from dlcli.use.evaluate import load_run_model
    from dlcli.use.saved import open_run, run_labels, run_preprocessing

    chosen, skipped = chosen_formats(formats)
    run = open_run(run, runs_dir)
    if output is not None:
        root = Path(output).resolve()
        if root.exists() and not root.is_dir():
            raise ConfigError(
                Problem(
                    "--output names a file; give a folder (it is created if missing)",
                    where=str(output),
                )
            )
        where, report_path, elsewhere = root, root / "exports.json", "choose another --output"
        shown = (str(output), str(Path(output) / "exports.json"))
    else:
        run.lock()  # one export or resume of a run at a time; let go when done (below)
        root, where, report_path = run.path, run.folder("export"), run.file("exports.json")
        shown, elsewhere = (str(where), str(report_path)), "export elsewhere with --output DIR"
    try:
        # Before the slow part and before writing anything: every folder to be replaced is
        # dlcli's own earlier copy, and exports.json is dlcli's record (else exit 2).
        previous = checked_targets(where, [f.name for f in chosen], report_path, *shown, elsewhere)
        trained_on = run.record.backend
        keras, model, config, record = load_run_model(run, "tensorflow")
        if not os.environ.get(
            "DLCLI_DEBUG"
        ):  # TensorFlow's Python warnings while saving ("probably safe to ignore")
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
        labels = run_labels(run, record, model)
        preprocessing = run_preprocessing(run, record)
        if record.data.text is not None:
            table = RawText(preprocessing)
        elif record.data.images is not None:
            table = RawImages(tuple(model.input_shape[1:]))
        elif preprocessing is not None and preprocessing.text is not None:
            table = None  # a table with a text column: every copy takes the model's input
        else:
            table = RawTable(preprocessing) if preprocessing is not None else None
        model, augmentation = without_augmentation(keras, model)
        if output is not None:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    Problem(f"cannot create it: {io_error(exc)}", where=str(output))
                ) from None
        job = Job(
            run,
            keras,
            model,
            config,
            labels,
            table,
            trained_on,
            root,
            where,
            report_path,
            shown[0],
            elsewhere,
            augmentation,
            record.data,
            preprocessing,
        )
        return _export(job, chosen, skipped, previous, progress or (lambda text: None))
    finally:
        run.unlock()


@dataclass
class Job:
    """One export: the run, its model on TensorFlow, and where the copies and record go."""

    run: object
    keras: object
    model: object
    config: object
    labels: list | None
    table: RawTable | None
    trained_on: str | None
    root: Path  # paths in exports.json are relative to it (the run folder, or --output)
    where: Path  # the formats' folders go in here
    report_path: Path
    shown_where: str  # `where` as the user named it
    elsewhere: str  # the other way out when a folder is the user's (another --output)
    augmentation: list  # augmentation layers left out of the copies (identity at inference)
    record: object = None  # run.json's data section
    preprocessing: object = None  # the run's preprocessing.json

    def shown(self, path: Path) -> str:
        return str(path.relative_to(self.root))


def _export(
    job: Job, chosen: list[Format], skipped: dict, previous: dict, say: Callable[[str], None]
) -> dict:
    from dlcli.data.dataset import load_data
    from dlcli.model.outputs import class_probabilities

    run, keras, model, table, where = job.run, job.keras, job.model, job.table, job.where

    say("reading the test split")
    text = table.text if isinstance(table, RawText) else None
    split = load_data(job.config, fitted=text).split("test")
    dtype = "int32" if text is not None and text.output_mode == "int" else "float32"
    x = np.ascontiguousarray(_first_rows(split, MAX_ROWS, model.input_shape[1:]), dtype=dtype)
    documents = _first_texts(split, len(x)) if text is not None else None
    if not len(x):
        raise ConfigError(
            Problem(
                "the run has no test split to check the copies on (data.test_split: 0); "
                "retrain it with a test split",
                where=str(run.file("config.yaml")),
            )
        )
    classes = (lambda out: class_probabilities(model, out).argmax(axis=-1)) if job.labels else None
    reference = outputs_of(model.predict_on_batch, x)
    scale = max(1.0, float(np.max(np.abs(reference)))) if np.isfinite(reference).all() else 1.0
    precision = precision_of(model)
    plain = plain_reference = None
    report = {
        "run": run.id,
        "time": now_iso(),
        "backend": keras.backend.backend(),
        "trained_on": job.trained_on,
        "route": "model.keras loaded on TensorFlow"
        + (f" (trained on {job.trained_on})" if job.trained_on else ""),
        "precision": precision,
        "test_samples": len(x),
        **({"augmentation_removed": job.augmentation} if job.augmentation else {}),
        "thresholds": {
            "max_abs_diff": LOOSE_TOLERANCE if precision != "float32" else TOLERANCE,
            "max_abs_diff_litert": LOOSE_TOLERANCE,
            "times": scale,
            "agreement": AGREEMENT,
        },
        "reference": {
            "runtime": "keras model.predict",
            "latency_ms_per_sample": {
                str(b): latency_ms(
                    lambda rows: model.predict(rows, batch_size=len(rows), verbose=0), x, b
                )
                for b in LATENCY_BATCHES
            },
        },
    }
    results = dict(previous.get("formats", {}))
    for fmt in chosen:
        say(f"writing {fmt.name}")
        entry = {
            "status": "failed",
            "runtime": fmt.runtime,
            "takes": RAW if (not isinstance(table, RawTable) or fmt.raw_tables) else INDICES,
        }
        fed = x  # what the copy takes: the model's input, or a text run's documents
        if getattr(job.preprocessing, "text", None) is not None:
            entry["takes"] = TABLE_WITH_TEXT
        if job.record.audio is not None:
            audio = job.record.audio
            entry["takes"] = (
                f"waveforms: {audio['output_sequence_length']} samples at "
                f"{audio['sampling_rate']} Hz, -1..1"
            )
        if text is not None:
            entry["takes"] = table.takes(fmt.name)
            fed = documents if fmt.name in TAKES_RAW_TEXT else x
        built = build_folder(where, fmt.name)  # ours alone: the only folders deleted below
        earlier = results.get(fmt.name)
        exported, against = model, reference
        if fmt.float32 and precision != "float32":
            # The copy computes the model in float32: checked against the same weights in
            # float32 in Keras (a bfloat16 model and its float32 self disagree on samples at
            # a class boundary); how far it is from the model as trained is recorded too.
            if plain is None:
                plain = rebuilt(keras, model, float32=True)
                plain_reference = outputs_of(plain.predict_on_batch, x)
            exported, against = plain, plain_reference
            entry["precision"] = (
                f"float32 (the run trained in {precision}; {fmt.name} needs float32)"
            )
            entry["checked_against"] = "the model computed in float32"
        else:
            entry["precision"] = precision
        try:
            path = fmt.write(exported, built, table)
            final = (
                (where / fmt.name / path.relative_to(built)) if path != built else where / fmt.name
            )
            files = written(built)
            replace_folder(
                built, where / fmt.name, earlier, f"{job.shown_where}/{fmt.name}", job.elsewhere
            )
            entry["files"] = files  # what is ours to replace next time
            copy = fmt.load(final, table)
            say(f"checking {fmt.name} on {len(x)} test samples")
            outputs = outputs_of(copy.run, fed)
            entry.update({"path": job.shown(final), "bytes": _size(final), "inputs": copy.inputs})
            entry.update(compare(against, outputs, classes))
            if copy.run_bytes is not None:  # the same images, encoded as PNG files
                encoded = _png(x[:ENCODED_ROWS])
                entry["encoded_images"] = compare(
                    against[:ENCODED_ROWS], outputs_of(copy.run_bytes, encoded), classes
                )
                bad = entry["encoded_images"]["max_abs_diff"]
                if bad is None or bad > TOLERANCE * scale:
                    entry["error"] = f"the encoded-image endpoint differs by {bad}"
            if against is not reference:
                entry["as_trained"] = compare(reference, outputs, classes)
            entry["latency_ms_per_sample"] = {
                str(b): latency_ms(copy.run, fed, b) for b in LATENCY_BATCHES
            }
        except Exception as exc:  # noqa: BLE001 - a converter or runtime fails in many ways
            shutil.rmtree(built, ignore_errors=True)
            if "files" not in entry and isinstance(earlier, dict) and "files" in earlier:
                entry["files"] = earlier["files"]  # the older copy stayed: still ours to replace
            entry["error"] = f"{type(exc).__name__}: {first_line(exc)[:300]}"
            results[fmt.name] = entry
            continue
        tolerance = (
            LOOSE_TOLERANCE if (fmt.loose or precision != "float32") else TOLERANCE
        ) * scale
        entry["tolerance"] = tolerance
        problems = []
        if entry.get("error"):
            problems.append(entry["error"])
        elif entry["max_abs_diff"] is None or entry["max_abs_diff"] > tolerance:
            problems.append(f"max_abs_diff {entry['max_abs_diff']:.3g} exceeds {tolerance:.3g}")
        if entry.get("agreement") is not None and entry["agreement"] < AGREEMENT:
            problems.append(f"agreement {entry['agreement']:.4f} is under {AGREEMENT}")
        entry["status"] = "failed" if problems else "ok"
        if problems:
            entry["error"] = "; ".join(problems)
        results[fmt.name] = entry
    report["formats"] = results
    if skipped:
        report["skipped"] = skipped
    report["failed"] = [f.name for f in chosen if results[f.name]["status"] != "ok"]
    _write_report(job.report_path, report)
    return report


def failure_line(report: dict) -> str | None:
    """The one-line cause when some copy failed its check (the command's exit 1)."""
    failed = report.get("failed") or []
    return (
        "export failed for "
        + "; ".join(f"{name}: {report['formats'][name].get('error')}" for name in failed)
        if failed
        else None
    )


def _first_rows(split, count: int, shape: tuple) -> np.ndarray:
    """The split's first `count` samples, read batch by batch (a streamed split is never
    read whole)."""
    batches, held = [], 0
    for batch in split.feature_batches():
        batches.append(batch[: count - held])
        held += len(batches[-1])
        if held >= count:
            break
    return np.concatenate(batches) if batches else np.zeros((0, *shape), "float32")


def _first_texts(split, count: int) -> np.ndarray:
    """A text split's first `count` documents, as `_first_rows` reads their ids."""
    found = []
    for texts in split.raw(split.rows.texts):
        found.extend(texts[: count - len(found)])
        if len(found) >= count:
            break
    return np.array(found, dtype=object)


ENCODED_ROWS = 16  # test images an image SavedModel's encoded-file endpoint is checked on


def _png(x: np.ndarray) -> np.ndarray:
    """Pixel arrays (0..255) as PNG files' bytes."""
    import io

    from PIL import Image

    files = []
    for pixels in np.clip(np.rint(x), 0, 255).astype("uint8"):
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
        files.append(buffer.getvalue())
    return np.array(files, dtype=object)


def _write_report(path: Path, report: dict) -> None:
    from dlcli.files import atomic_write, json_text

    try:
        atomic_write(path, json_text(report, indent=2) + "\n")
    except OSError as exc:
        raise RunFailed(
            f"exports.json could not be written: {io_error(exc)}", payload=report
        ) from None


__all__ = ["FORMATS", "INSTALL", "export_run", "failure_line"]
