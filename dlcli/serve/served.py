"""A finished run made ready to answer requests: what its requests hold, how they become the
model's input, what answers, and how outputs become the answer `dlcli predict` gives.

A request body is one of (by the run's data):
- `{"rows": [{column: value, ...}, ...]}`: a table run (raw values, as `predict` reads a file);
- `{"inputs": [[...], ...]}`: an array run (each sample flat, or nested in the model's shape);
- `{"texts": ["...", ...]}`: a text run;
- `{"files": ["<base64>", ...]}` (or multipart files): an image, audio or text run.

The answer: `{"predictions": [...], "probabilities": [{label: p}, ...]` (classification)`,
"unseen": {column: [values]}}` (a table's categories never seen in training, when any).
A client's mistake is a `RowProblem` (naming the row and field) that the server turns into
a 4xx.

Example:
    >>> served = load_served("latest")
    >>> samples, unseen = served.samples({"inputs": [[0.0] * 64]})
    >>> x, problems = served.join([samples])  # with other requests' samples, in a batch
    >>> served.answer(served.results(served.engine(x)), unseen)["predictions"]
    [7]
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field

import numpy as np

from dlcli.config.sources import MEDIA_SOURCES, TABLE_SOURCES
from dlcli.data.tables.rows import RowProblem, encode_rows
from dlcli.errors import ConfigError, Problem
from dlcli.model.outputs import as_probabilities
from dlcli.runs.runfolder import RunFolder
from dlcli.serve.engines import Engine, KerasEngine, OnnxEngine, onnx_copy
from dlcli.use.saved import loss_takes_logits, open_run, run_labels, run_preprocessing

MAX_ROWS = 10_000  # the most samples one request may hold (413 above)
KINDS = {"rows": "a table's rows", "inputs": "arrays", "texts": "texts", "files": "files"}


@dataclass
class Served:
    """A run ready to answer: its `kind` of request (rows | inputs | texts | files), the model's
    `sample_shape` and `dtype`, `labels` (None for regression), and the `engine`."""

    run: RunFolder
    kind: str
    source: str
    sample_shape: tuple
    dtype: str
    labels: list | None
    from_logits: bool
    engine: Engine
    preprocessing: object | None = None  # TablePreprocessing | TextPreprocessing
    media: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.names = [str(label) for label in self.labels or ()]  # the answer's keys
        self.width = math.prod(self.sample_shape)  # numbers in one flat sample

    # ------------------------------------------------------------ requests

    def samples(self, payload) -> tuple[np.ndarray | list, dict]:
        """(the request's samples, unseen categories) of a parsed JSON body (or
        `{"files": [bytes]}` from a multipart one), as `join` takes them: the model's input
        for rows, texts and files; an array run's JSON lists as they came, turned into
        numbers with the rest of their batch. A RowProblem for a client's mistake."""
        if not isinstance(payload, dict):
            raise RowProblem(f"the body must be a JSON object with '{self.kind}'")
        if len(payload) == 1 and self.kind in payload:  # the usual body, checked at once
            key = self.kind
        else:
            key = next((k for k in KINDS if k in payload), None)
            extra = [k for k in payload if k != key]
            if key is None or extra:
                raise RowProblem(self._body_form(extra[0] if extra and key else None))
        items = payload[key]
        if not isinstance(items, list):
            raise RowProblem(f"'{key}' must be a list, one entry per sample")
        if len(items) > MAX_ROWS:
            raise TooMany(len(items))
        if not items:
            raise RowProblem(f"'{key}' is empty; send at least one sample")
        if (key == "files" and self.kind == "files") or (key == "texts" and self.source == "text"):
            return self._media(items, key), {}
        if key != self.kind:
            raise RowProblem(self._body_form(None))
        if key == "rows":
            return encode_rows(self.preprocessing, items)
        return items, {}

    def join(self, parts: list) -> tuple[np.ndarray | None, dict[int, RowProblem]]:
        """The model's input for one batch of requests' `samples`, and the problem of each
        part that does not fit the model (by its place in `parts`; left out of the input).
        An array run's lists become numbers in one numpy call for the whole batch; only
        when that fails is each part converted alone, to find whose samples are wrong."""
        if not isinstance(parts[0], list):
            return (parts[0] if len(parts) == 1 else np.concatenate(parts)), {}
        joined = parts[0] if len(parts) == 1 else [sample for part in parts for sample in part]
        x = self._numbers(joined)
        if x is not None:
            return x, {}
        arrays, problems = [], {}
        for i, part in enumerate(parts):
            try:
                arrays.append(self._arrays(part))
            except RowProblem as problem:
                problems[i] = problem
        return (np.concatenate(arrays) if arrays else None), problems

    def _numbers(self, items: list) -> np.ndarray | None:
        """`items` as the model's input when every sample is finite numbers of its shape."""
        try:  # numbers (or their text, as a CSV holds them); null is NaN
            x = np.array(items, dtype=self.dtype)
        except (ValueError, TypeError):  # ragged, or a value that is no number
            return None
        if x.shape[1:] != self.sample_shape and x.shape[1:] != (self.width,):
            return None
        if not np.logical_and.reduce(np.isfinite(x), axis=None):
            return None
        return x.reshape((len(x), *self.sample_shape))

    def _body_form(self, extra: str | None) -> str:
        also = ", or 'texts' (the documents themselves)" if self.source == "text" else ""
        fix = f'send {{"{self.kind}": [...]}}{also}'
        if extra:
            return f"unknown key '{extra}' in the body; {fix}"
        return f"this run's model takes {KINDS[self.kind]}; {fix}"

    def _arrays(self, items: list) -> np.ndarray:
        """One request's samples as the model's input, or the RowProblem of the first wrong one."""
        x = self._numbers(items)
        if x is not None:
            return x
        width = self.width
        for r, item in enumerate(items):
            _check_sample(item, self.sample_shape, width, r)
        try:  # each sample is numbers of the model's shape: flat and nested ones mixed?
            x = np.array(items, dtype=self.dtype)
        except (ValueError, TypeError):
            x = None
        if x is None or (x.shape[1:] != self.sample_shape and x.shape[1:] != (width,)):
            raise RowProblem(f"each sample is {_shape_text(self.sample_shape, width)}")
        r = int(np.argmax(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)))
        raise RowProblem("holds a value that is not a finite number (NaN, inf or null)", r)

    def _media(self, items: list, key: str) -> np.ndarray:
        rows = []
        for r, item in enumerate(items):
            if key == "texts":
                if not isinstance(item, str):
                    raise RowProblem(f"must be text, got {type(item).__name__}", r)
                rows.append(item)
                continue
            data = item if isinstance(item, bytes) else _base64(item, r)
            rows.append(self._decode(data, r))
        if self.source == "text":
            return self.preprocessing.vectorize(np.asarray(rows, dtype=object))
        return np.stack(rows)

    def _decode(self, data: bytes, r: int):
        from dlcli.data.media.store import BadFile

        try:
            if self.source == "images":
                from dlcli.data.media import images

                return images.decode(data, self.media["size"], self.media["color_mode"])
            if self.source == "audio":
                from dlcli.data.media import audio

                return audio.decode(data, self.media["rate"], self.media["length"])
            from dlcli.data.media.text import decode_text

            return decode_text(data)
        except BadFile as exc:
            raise RowProblem(f"the file {exc}", r, "files") from None

    # ------------------------------------------------------------ answers

    def results(self, outputs: np.ndarray) -> tuple[list, ...]:
        """The answer's columns for a batch of outputs, one entry per sample:
        `(predictions,)`, or `(predictions, probabilities)` for classification. Made for all
        the requests of a model call at once, so numpy converts to Python once a batch."""
        if self.labels is None:
            values = outputs.reshape(len(outputs), -1).astype("float64")
            return (values[:, 0].tolist() if values.shape[1] == 1 else values.tolist(),)
        probabilities = as_probabilities(outputs, self.from_logits)
        labels, names = self.labels, self.names
        return (
            [labels[i] for i in probabilities.argmax(axis=-1).tolist()],
            [dict(zip(names, row)) for row in probabilities.round(6).tolist()],
        )

    def answer(self, results: tuple[list, ...], unseen: dict) -> dict:
        """One request's answer from its share of `results`: predictions, probabilities
        (classification) and the table's unseen categories (when any)."""
        out = {"predictions": results[0]}
        if len(results) > 1:
            out["probabilities"] = results[1]
        if unseen:
            out["unseen"] = unseen
        return out


class TooMany(RowProblem):
    """More samples than one request may hold (413)."""

    def __init__(self, count: int):
        super().__init__(
            f"{count:,} samples in one request, more than {MAX_ROWS:,}; send them in parts"
        )


def _check_sample(item, shape: tuple, width: int, r: int) -> None:
    try:
        sample = np.array(item, dtype="float64")
    except (ValueError, TypeError):
        raise RowProblem(
            f"must hold only numbers, {_shape_text(shape, width)} (ragged, or text that is no number)",
            r,
        ) from None
    if sample.shape != shape and sample.shape != (width,):
        raise RowProblem(
            f"has shape {list(sample.shape)}; each sample is {_shape_text(shape, width)}", r
        )


def _shape_text(shape: tuple, width: int) -> str:
    nested = f" or nested as {list(shape)}" if len(shape) > 1 else ""
    return f"{width} numbers{nested}"


def _base64(item, r: int) -> bytes:
    if not isinstance(item, str):
        raise RowProblem(f"must be a base64 string, got {type(item).__name__}", r, "files")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise RowProblem("is not base64 (standard alphabet, padded)", r, "files") from None


# ---------------------------------------------------------------------------- loading


def load_served(run, runs_dir=None, backend: str | None = None, engine: str = "auto") -> Served:
    """A run ready to answer: `engine` auto (the ONNX copy when there is a verified one that
    serves this run, else Keras), onnx (the copy, or a ConfigError saying why not) or keras."""
    run = open_run(run, runs_dir)
    record = run.record
    summary = record.data
    if summary.input_shape is None or record.status != "completed":
        raise ConfigError(
            Problem(
                f"the run has no finished model (status: {record.status}); train it to completion first",
                where=str(run.path),
            )
        )
    source = summary.source
    preprocessing = run_preprocessing(run, record)
    kind = "rows" if source in TABLE_SOURCES else "files" if source in MEDIA_SOURCES else "inputs"
    needs_tensorflow = source in ("text", "images") or getattr(preprocessing, "text", None)
    copy = onnx_copy(run)
    if engine == "onnx" and (copy is None or needs_tensorflow):
        why = (
            "its inputs are prepared by Keras (text, images)"
            if needs_tensorflow
            else "it has no ONNX copy that passed its check; run `dlcli export RUN --format onnx`"
        )
        raise ConfigError(Problem(f"cannot serve the ONNX copy: {why}", where=str(run.path)))
    if copy is not None and engine != "keras" and not needs_tensorflow:
        answering = OnnxEngine(copy, str(copy.relative_to(run.path)))
    else:
        from dlcli.use.evaluate import load_run_model  # Keras, and the config's schema

        keras, model, _, record = load_run_model(run, backend)
        answering = KerasEngine(keras, model)
    labels = run_labels(run, record, answering)
    sample_shape, dtype = _sample(source, summary, preprocessing)
    media = _media_settings(source, summary)
    served = Served(
        run,
        kind,
        source,
        sample_shape,
        dtype,
        labels,
        loss_takes_logits(run),
        answering,
        preprocessing,
        media,
    )
    answering.warm(sample_shape, dtype)
    served.metadata = _metadata(served, record)
    return served


def _sample(source: str, summary, preprocessing) -> tuple[tuple, str]:
    if source == "text":
        return tuple(preprocessing.sample_shape), preprocessing.dtype
    if source == "images":
        return tuple(summary.input_shape), "uint8"
    return tuple(summary.input_shape), "float32"


def _media_settings(source: str, summary) -> dict:
    media = getattr(summary, source, None) or {}
    if source == "images":
        size = media.get("image_size") or list(summary.input_shape[:2])
        return {"size": tuple(size), "color_mode": media.get("color_mode", "rgb")}
    if source == "audio":
        return {"rate": int(media["sampling_rate"]), "length": int(media["output_sequence_length"])}
    return {}


def _metadata(served: Served, record) -> dict:
    metrics = served.run.read_json("metrics.json") or {}
    test = {
        k: v
        for k, v in (metrics.get("test") or {}).items()
        if isinstance(v, (int, float)) and math.isfinite(v)
    }
    return {
        "run": served.run.id,
        "run_id": served.run.id,
        "name": record.name,
        "task": record.data.task,
        "source": served.source,
        "engine": served.engine.name,
        "request": served.kind if served.source != "text" else "texts or files",
        "inputs": _inputs(served),
        "classes": served.labels,
        "metrics": test,  # the run's scores on its test split (metrics.json's "test")
        "limits": {"max_samples": MAX_ROWS},
    }


def _inputs(served: Served) -> list[dict]:
    """What a request holds: a table's columns (type, categories), or one input's shape."""
    if served.kind == "rows":
        prep = served.preprocessing
        columns = []
        for f in prep.features:
            column = {"name": f.name, "type": f.type}
            if f.type == "categorical":
                column["categories"] = list(f.categories)
            column["missing"] = ["null", *prep.missing]
            columns.append(column)
        return columns
    if served.kind == "inputs":
        return [
            {
                "name": "inputs",
                "type": "array",
                "shape": list(served.sample_shape),
                "dtype": served.dtype,
            }
        ]
    media = {k: list(v) if isinstance(v, tuple) else v for k, v in served.media.items()}
    kind = {"images": "image", "audio": "audio", "text": "text"}[served.source]
    return [{"name": "files", "type": f"{kind} file", **media}]


__all__ = ["MAX_ROWS", "Served", "TooMany", "load_served"]
