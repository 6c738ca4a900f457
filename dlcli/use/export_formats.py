"""The export formats: for each, what it needs, how a copy is written from a model loaded on
TensorFlow, and how it is loaded back in its own runtime (TensorFlow's SavedModel loader,
onnxruntime, the LiteRT interpreter, Keras) to be checked; and `RawTable`, which gives a
table's copies their raw columns.

Adding a format: its `write` and `load`, and a `Format` in `FORMATS`; the checks,
`exports.json` and `dlcli show` take it from there (`dlcli.use.export`).
"""

from __future__ import annotations

import importlib.util
import re
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.runtime import compat

INSTALL = "pip install 'dlcli[export]'"


RAW = "raw features"


INDICES = "category indices"
TOKEN_IDS = "token ids (the vocabulary is in preprocessing.json)"
TEXT_VECTORS = "a number per vocabulary entry (the vocabulary is in preprocessing.json)"
RAW_TEXT = "raw text (strings)"
TABLE_WITH_TEXT = (
    "category indices, then the text column's vector (both vocabularies are in preprocessing.json)"
)


@dataclass(frozen=True)
class Format:
    """One export format: what it needs, where it goes, and how it is written and read back.

    `write(model, folder, table)` makes the copy inside `folder` and returns its path; `load(path,
    table)` returns a `Copy` that runs it in the format's own runtime.
    """

    name: str
    needs: tuple[str, ...]  # importable modules (the runtime that reads the copy back included)
    runtime: str
    write: Callable
    load: Callable
    float32: bool = False  # the format cannot hold a mixed-precision model
    raw_tables: bool = False  # takes a table's raw columns (category text); else category indices
    loose: bool = False  # compared with LOOSE_TOLERANCE whatever the precision

    def missing(self) -> list[str]:
        return [module for module in self.needs if importlib.util.find_spec(module) is None]


@dataclass
class Copy:
    """A loaded copy: `run(x)` answers for a batch of model inputs (rows as the Keras model
    takes them; a raw-column copy turns them back into columns with `RawTable.raw`), `inputs`
    describes what it takes."""

    run: Callable[[np.ndarray], np.ndarray]
    inputs: list[dict]
    run_bytes: Callable | None = None  # an image SavedModel's endpoint for encoded files


def _tf():
    import tensorflow as tf

    return tf


def write_keras(model, folder: Path, table) -> Path:
    path = folder / "model.keras"
    _with_vectorizer(model, table).save(path)
    return path


def _with_vectorizer(model, table):
    """A text run's model with its vectorizer in front (raw strings in); else the model."""
    if not isinstance(table, RawText):
        return model
    import keras

    from dlcli.model.inputs import saved_form

    return saved_form(keras, model, table.text)


def load_keras(path: Path, table) -> Copy:
    from dlcli.runtime.keras_import import keras_module

    keras = keras_module()
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    spec = loaded.inputs[0]
    convert = (
        (lambda x: _tf().constant(list(x), _tf().string)) if isinstance(table, RawText) else None
    )
    return Copy(
        lambda x: keras.ops.convert_to_numpy(loaded(convert(x) if convert else x, training=False)),
        [{"name": spec.name, "dtype": str(spec.dtype), "shape": list(spec.shape)}],
    )


def write_saved_model(model, folder: Path, table) -> Path:
    path = folder  # a SavedModel is a folder: export/saved_model/ itself
    if isinstance(table, RawImages):
        return _saved_model_of_images(model, path, table)
    if isinstance(table, RawText):
        _with_vectorizer(model, table).export(str(path), format="tf_saved_model", verbose=False)
        return path
    if table is None:
        model.export(str(path), format="tf_saved_model", verbose=False)
        return path
    import keras

    tf = _tf()
    archive = keras.export.ExportArchive()
    archive.track(model)
    lookups = {}
    for column in table.columns:
        if column.categories is not None:
            keys = tf.constant(column.categories, tf.string)
            values = tf.constant(np.arange(1, len(column.categories) + 1, dtype="float32"))
            lookups[column.key] = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, values), 0.0
            )
            archive.track(lookups[column.key])

    def serve(features):
        parts = [
            lookups[c.key].lookup(features[c.key])
            if c.key in lookups
            else tf.cast(features[c.key], tf.float32)
            for c in table.columns
        ]
        return model(tf.stack(parts, axis=1), training=False)

    signature = {
        c.key: tf.TensorSpec(
            [None], tf.string if c.categories is not None else tf.float32, name=c.key
        )
        for c in table.columns
    }
    archive.add_endpoint("serve", serve, input_signature=[signature])
    archive.write_out(str(path), verbose=False)
    return path


def _saved_model_of_images(model, path: Path, images: RawImages) -> Path:
    """An image model's SavedModel: `serve` (the default) takes float pixels of the trained
    size, `serve_bytes` encoded files (PNG, JPEG, BMP, GIF), decoded and resized in the graph."""
    import keras

    tf = _tf()
    height, width, channels = images.shape
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(pixels):
        return model(pixels, training=False)

    def decode(data):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        image.set_shape([None, None, channels])
        return tf.image.resize(tf.cast(image, tf.float32), [height, width])

    def serve_bytes(encoded):
        pixels = tf.map_fn(decode, encoded, fn_output_signature=tf.float32)
        return model(pixels, training=False)

    archive.add_endpoint(
        "serve", serve, input_signature=[tf.TensorSpec([None, *images.shape], tf.float32)]
    )
    archive.add_endpoint(
        "serve_bytes", serve_bytes, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    archive.write_out(str(path), verbose=False)
    return path


def load_saved_model(path: Path, table) -> Copy:
    tf = _tf()
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    _, specs = serve.structured_input_signature
    inputs = [
        {"name": name, "dtype": spec.dtype.name, "shape": spec.shape.as_list()}
        for name, spec in specs.items()
    ]
    if isinstance(table, RawImages):
        endpoint = loaded.signatures["serve_bytes"]
        (key,) = endpoint.structured_input_signature[1]
        inputs.append({"name": key, "signature": "serve_bytes", "dtype": "string", "shape": [None]})

        def run_bytes(encoded):
            outputs = endpoint(**{key: tf.constant(list(encoded), tf.string)})
            return next(iter(outputs.values())).numpy()

        pixels = next(iter(specs))
        return Copy(
            lambda x: next(iter(serve(**{pixels: tf.constant(x)}).values())).numpy(),
            inputs,
            run_bytes,
        )
    text = isinstance(table, RawText)
    table = table if isinstance(table, RawTable) else None
    if table is not None:  # in the table's column order
        inputs.sort(key=lambda entry: table.by_key[entry["name"]].index)
        for entry in inputs:
            entry["column"] = table.by_key[entry["name"]].name

    def run(x):
        if table is not None:
            feed = {key: tf.constant(value) for key, value in table.raw(x).items()}
        elif text:
            feed = {next(iter(specs)): tf.constant(list(x), tf.string)}
        else:
            feed = {next(iter(specs)): tf.constant(x)}
        outputs = serve(**feed)
        return next(iter(outputs.values())).numpy()

    return Copy(run, inputs)


def write_onnx(model, folder: Path, table) -> Path:

    path = folder / "model.onnx"
    model = constants_as_variables(model)
    with warnings.catch_warnings():  # Keras's tf2onnx patch probes `np.object` (a FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False)
    return path


def constants_as_variables(model):
    """A copy of the model whose Normalization statistics are variables, not the eager tensors
    Keras builds them as: tf2onnx freezes variables into the graph but leaves captured eager
    tensors as extra graph inputs, which onnxruntime then demands ('Required inputs ... are
    missing from input feed')."""
    import keras

    tf = _tf()
    copy = rebuilt(keras, model)
    for layer in compat.inner_layers(copy):
        if isinstance(layer, keras.layers.MelSpectrogram):
            layer._spectrogram = types.MethodType(_magnitudes, layer)
        if isinstance(layer, keras.layers.Normalization) and layer.input_mean is not None:
            layer.mean = tf.Variable(np.asarray(layer.mean), trainable=False, name="mean")
            layer.variance = tf.Variable(
                np.asarray(layer.variance), trainable=False, name="variance"
            )
    return copy


def _magnitudes(layer, inputs):
    """MelSpectrogram's short-time Fourier magnitudes, as Keras computes them on TensorFlow
    (`keras.src.backend.tensorflow.math.stft`: reflect-padded, a periodic window), with the
    transform as a strided convolution by the windowed Fourier basis (as Keras's
    `STFTSpectrogram` computes it): tf2onnx turns `rfft` into operators onnxruntime does not
    load (`ComplexAbs`), and a convolution into ONNX's own `Conv`."""
    tf = _tf()
    x = tf.convert_to_tensor(inputs)
    fft, length = layer.fft_length, layer.sequence_length
    x = tf.pad(x, [(0, 0)] * (len(x.shape) - 1) + [(fft // 2, fft // 2)], mode="reflect")
    n = np.arange(length)
    if layer.window is None:
        window = np.ones(length)
    elif layer.window == "hann":
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / length)
    else:
        window = 0.54 - 0.46 * np.cos(2 * np.pi * n / length)
    left = (fft - length) // 2
    window = np.pad(window, (left, fft - length - left))
    angle = 2 * np.pi * np.outer(np.arange(fft), np.arange(fft // 2 + 1)) / fft
    basis = np.concatenate([window[:, None] * np.cos(angle), -window[:, None] * np.sin(angle)], 1)
    kernel = tf.constant(basis[:, None, :].astype("float32"))
    parts = tf.nn.conv1d(x[..., None], kernel, stride=layer.sequence_stride, padding="VALID")
    real, imag = tf.split(parts, 2, axis=-1)
    return tf.pow(tf.sqrt(tf.square(real) + tf.square(imag)), layer.mag_exp)


def load_onnx(path: Path, table) -> Copy:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    name = spec.name
    return Copy(
        lambda x: session.run(None, {name: x})[0],
        [
            {
                "name": name,
                "dtype": spec.type,
                "shape": [d if isinstance(d, int) else None for d in spec.shape],
            }
        ],
    )


def write_litert(model, folder: Path, table) -> Path:
    path = folder / "model.tflite"
    model.export(str(path), format="litert", verbose=False)
    return path


def load_litert(path: Path, table) -> Copy:
    from ai_edge_litert.interpreter import Interpreter

    from dlcli.runtime.keras_import import quiet_stderr

    with quiet_stderr():  # the interpreter's C++ logs ("Created TensorFlow Lite XNNPACK delegate")
        interpreter = Interpreter(model_path=str(path))
    spec = interpreter.get_input_details()[0]
    shape = [None if d < 0 else int(d) for d in spec.get("shape_signature", spec["shape"])]
    state = {"rows": None}

    def run(x):
        if state["rows"] != len(x):  # the batch size is fixed per allocation
            with quiet_stderr():
                interpreter.resize_tensor_input(spec["index"], [len(x), *x.shape[1:]])
                interpreter.allocate_tensors()
            state["rows"] = len(x)
        interpreter.set_tensor(spec["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return Copy(
        run, [{"name": spec["name"], "dtype": np.dtype(spec["dtype"]).name, "shape": shape}]
    )


FORMATS = {
    f.name: f
    for f in (
        Format(
            "saved_model",
            ("tensorflow",),
            "tensorflow",
            write_saved_model,
            load_saved_model,
            raw_tables=True,
        ),
        Format(
            "onnx",
            ("tf2onnx", "onnx", "onnxruntime"),
            "onnxruntime",
            write_onnx,
            load_onnx,
            float32=True,
        ),
        Format(
            "litert",
            ("tensorflow", "ai_edge_litert"),
            "LiteRT interpreter",
            write_litert,
            load_litert,
            float32=True,
            loose=True,
        ),
        Format("keras", (), "keras", write_keras, load_keras),
    )
}


@dataclass(frozen=True)
class RawImages:
    """An image run's input: pixels of `shape` (height, width, channels)."""

    shape: tuple


@dataclass(frozen=True)
class RawText:
    """A text run's input: documents, turned into the model's input by `text` (the run's
    `TextPreprocessing`) inside the keras and SavedModel copies."""

    text: object

    def takes(self, fmt_name: str) -> str:
        if fmt_name in TAKES_RAW_TEXT:
            return RAW_TEXT
        return TOKEN_IDS if self.text.output_mode == "int" else TEXT_VECTORS


TAKES_RAW_TEXT = ("keras", "saved_model")  # the copies that hold the vectorizer


# Keras's augmentation layers that are the identity at inference (RandomCrop is not: it
# crops the centre), and whose random ops some runtimes cannot load (onnxruntime).
AUGMENTATION_KEEPS = ("RandomCrop",)


def without_augmentation(keras, model):
    """(the model without its augmentation layers, their names): the same weights, the same
    outputs at inference, no random ops in the graph. The model itself when it has none."""
    removed = [
        layer.name
        for layer in model.layers
        if type(layer).__name__.startswith("Random")
        and type(layer).__name__ not in AUGMENTATION_KEEPS
    ]
    return (rebuilt(keras, model, leave_out=removed), removed) if removed else (model, [])


@dataclass
class Column:
    name: str  # the table's column
    key: str  # the name the SavedModel's signature gives it
    index: int
    categories: list[str] | None  # a categorical column's vocabulary (index i + 1)


class RawTable:
    """A table run's columns as the SavedModel takes them, and the conversion of the model's
    input rows (category indices) back to raw columns (the category text)."""

    def __init__(self, preprocessing):
        self.columns, taken = [], set()
        for i, feature in enumerate(preprocessing.features):
            key = re.sub(r"[^A-Za-z0-9_.\-]", "_", feature.name) or f"column_{i}"
            key = key if re.match(r"[A-Za-z0-9.]", key) else f"c{key}"
            while key in taken:
                key = f"{key}_{i}"
            taken.add(key)
            categories = (
                [str(c) for c in feature.categories] if feature.type == "categorical" else None
            )
            self.columns.append(Column(feature.name, key, i, categories))
        # UTF-8 bytes, as TensorFlow holds strings (the lookup's keys are encoded the same way)
        self._text = {
            c.key: np.array([b"", *(v.encode() for v in c.categories)], dtype=object)
            for c in self.columns
            if c.categories is not None
        }
        self.by_key = {c.key: c for c in self.columns}

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of model input -> one array per column: numbers as float32 (NaN where missing),
        categories as their text ('' for a missing or unseen one, which the lookup maps to 0
        as dlcli does)."""
        columns = {}
        for c in self.columns:
            if c.categories is None:
                columns[c.key] = x[:, c.index].astype("float32")
            else:
                codes = (
                    np.nan_to_num(x[:, c.index], nan=0.0).astype("int64").clip(0, len(c.categories))
                )
                columns[c.key] = self._text[c.key][codes]
        return columns


def rebuilt(keras, model, float32: bool = False, leave_out=()):
    """A copy of the model (same weights, layer by layer), with every layer computing in
    float32 if `float32` (for formats that cannot hold mixed precision), without the layers
    named in `leave_out`."""

    def plain(value):
        if isinstance(value, dict):
            if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(
                value.get("config"), dict
            ):
                return {**value, "config": {**value["config"], "name": "float32"}}
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return "float32" if value in ("mixed_float16", "mixed_bfloat16") else value

    config = keras.saving.serialize_keras_object(model)
    config = plain(config) if float32 else config
    if leave_out:
        inner = config["config"]
        inner["layers"] = [
            entry
            for entry in inner["layers"]
            if entry.get("config", {}).get("name") not in leave_out
        ]
    copy = keras.saving.deserialize_keras_object(config, safe_mode=True)
    copy(
        np.zeros((1, *model.input_shape[1:]), "float32"), training=False
    )  # built and called, as export needs
    for layer in copy.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return copy


def precision_of(model) -> str:
    names = {getattr(layer.dtype_policy, "name", "float32") for layer in model.layers}
    mixed = sorted(n for n in names if n != "float32")
    return mixed[0] if mixed else "float32"


__all__ = [
    "FORMATS",
    "INDICES",
    "INSTALL",
    "RAW",
    "TABLE_WITH_TEXT",
    "TAKES_RAW_TEXT",
    "Copy",
    "Format",
    "RawImages",
    "RawTable",
    "RawText",
    "precision_of",
    "rebuilt",
    "without_augmentation",
]
