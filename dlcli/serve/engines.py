"""What computes a served run's outputs: its verified ONNX copy on onnxruntime, or its Keras
model called directly.

`OnnxEngine` is chosen when `dlcli export` made an ONNX copy that passed its check, the copy
is newer than the model, and the run's inputs are numbers dlcli prepares without Keras
(table rows, arrays, recordings): then the server imports neither TensorFlow nor Keras.
`KerasEngine` otherwise: on JAX a compiled function of the model's weights (batches padded to
a power of two, so a handful of shapes are compiled once), elsewhere Keras's
`predict_on_batch`; never `model.predict`, which sets up a data pipeline per call.

Each engine takes a float batch of model inputs and gives the model's outputs as numpy.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

CHUNK = 1024  # the most rows one model call takes (a larger batch is split)
INLINE_MS = 1.0  # an engine faster than this per call runs on the event loop, not a thread


class Engine:
    """`name` (what answers, for /metadata and the log), `inline` (answers within
    `INLINE_MS` at batch 1, measured by `warm`)."""

    name = ""
    inline = False
    output_shape: tuple = ()  # (batch, outputs): labels.json is checked against it

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) <= CHUNK:
            return self.run(x)
        return np.concatenate([self.run(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])

    def warm(self, sample_shape: tuple, dtype: str) -> None:
        """Call the engine on every batch size it compiles for, then time batch 1."""
        for size in (1, 2, 4, 8, 16, 32, 64):
            self(np.zeros((size, *sample_shape), dtype=dtype))
        one = np.zeros((1, *sample_shape), dtype=dtype)
        times = []
        for _ in range(20):
            started = time.perf_counter()
            self(one)
            times.append(time.perf_counter() - started)
        self.inline = statistics.median(times) * 1000 < INLINE_MS


class OnnxEngine(Engine):
    def __init__(self, path: Path, shown: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One request's batch is small: one thread answers it fastest, and leaves the other
        # cores to HTTP (and to the other workers).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self.outputs = [self.session.get_outputs()[0].name]
        self.output_shape = tuple(self.session.get_outputs()[0].shape)
        self.name = f"onnxruntime ({shown})"

    def run(self, x):
        return self.session.run(self.outputs, {self.input: x.astype("float32", copy=False)})[0]


class KerasEngine(Engine):
    def __init__(self, keras, model):
        self.backend = keras.backend.backend()
        self.name = f"keras ({self.backend})"
        self.model = model
        self.output_shape = tuple(model.output_shape)
        if self.backend == "jax":
            import jax

            trainable = [v.value for v in model.trainable_variables]
            other = [v.value for v in model.non_trainable_variables]
            call = jax.jit(lambda t, o, x: model.stateless_call(t, o, x, training=False)[0])
            self._jax = lambda x: np.asarray(call(trainable, other, x))
        else:
            self._jax = None

    def run(self, x):
        if self._jax is None:
            return np.asarray(self.model.predict_on_batch(x))
        size = 1 << max(0, len(x) - 1).bit_length()  # compiled once per power of two
        if size != len(x):
            padded = np.zeros((size, *x.shape[1:]), dtype=x.dtype)
            padded[: len(x)] = x
            return self._jax(padded)[: len(x)]
        return self._jax(x)


def onnx_copy(run) -> Path | None:
    """The run's ONNX copy when `exports.json` says it passed its check and it is newer than
    the model (a model trained again since would not match it); else None."""
    import importlib.util

    try:
        report = json.loads(run.file("exports.json").read_text())
        entry = report["formats"]["onnx"]
        path = run.path / entry["path"]
        fresh = path.stat().st_mtime >= run.file("model.keras").stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if entry.get("status") != "ok" or not fresh:
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    return path


__all__ = ["CHUNK", "Engine", "KerasEngine", "OnnxEngine", "onnx_copy"]
