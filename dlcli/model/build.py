"""The model: a keras.Sequential stack from `model.layers`, checked against the data.

`resolve` returns the config with what it left out filled in (the loss, the input shape,
the last Dense layer's units), so that the resolved config written to the run folder
reproduces the run; the config it is given is left as it was. `build_model` puts the
preprocessing fitted on the training split (`dlcli.model.inputs`) in front of the user's
stack, so the saved model takes raw features, and compiles it. Mismatches Keras would only
report mid-fit are `ConfigError`s here (`dlcli.model.checks.output_problems`), all of them at
once, each pointing at the config line.

Example:
    >>> config = resolve(load_config("configs/digits_mlp.yaml"), dataset)
    >>> model = build_model(config, dataset, keras, choices)
"""

from __future__ import annotations

import numpy as np

from dlcli.config.schema import Config, KerasObject
from dlcli.data.dataset import Dataset
from dlcli.errors import ConfigError, Problem, first_line
from dlcli.model.checks import ends_in_logits, monitor_problems, output_problems
from dlcli.model.inputs import input_dtype, input_layer
from dlcli.runtime import keras_names
from dlcli.runtime.losses import BINARY, default_loss, loss_class


def resolve(config: Config, data: Dataset) -> Config:
    """A copy of `config` with the loss, input shape and output units it left out."""
    resolved = config.model_copy(deep=True)
    if resolved.compile.loss is None:
        resolved.compile.loss = KerasObject(type=default_loss(data.task, data.one_hot))
        if data.task == "classification" and ends_in_logits(resolved.model.layers):
            resolved.compile.loss.__pydantic_extra__["from_logits"] = (
                True  # a linear last layer gives logits
            )
    if resolved.model.input_shape is None:
        resolved.model.input_shape = list(data.input_shape)
    media = data.media or {}
    d = resolved.data
    if "image_size" in media and d.image_size is None:
        d.image_size = list(media["image_size"])
    if "sampling_rate" in media:
        d.sampling_rate = d.sampling_rate or media["sampling_rate"]
        d.output_sequence_length = d.output_sequence_length or media["output_sequence_length"]
    text = getattr(data, "text", None)
    if text is not None and text.output_mode == "int":
        for spec in resolved.model.layers:  # the first Embedding takes the vocabulary's ids
            if spec.type.lower() == "embedding":
                if "input_dim" not in spec.kwargs:
                    spec.__pydantic_extra__["input_dim"] = len(text.vocabulary) + 2
                break
    last = resolved.model.layers[-1]
    if last.type.lower() == "dense" and "units" not in last.kwargs:
        binary = loss_class(resolved.compile.loss) in BINARY
        units = (
            data.target_width if data.task == "regression" else (1 if binary else data.n_classes)
        )
        last.__pydantic_extra__["units"] = units
    return resolved


def build_model(config: Config, data: Dataset, keras, choices: dict):
    """Build and compile the model of a resolved config; ConfigError with every problem."""
    problems: list[Problem] = []
    shape = tuple(config.model.input_shape)
    if int(np.prod(shape)) != int(np.prod(data.input_shape)):
        raise ConfigError(
            config.problem(
                ("model", "input_shape"),
                f"{list(shape)} does not fit the data's {list(data.input_shape)} features per sample",
            )
        )

    model = keras.Sequential(name=config.name.replace(".", "_"))
    model.add(keras.Input(shape=shape, dtype=input_dtype(data)))
    norm = input_layer(keras, config.data.normalize, data, shape)
    if norm is not None:
        model.add(norm)
    first = config.model.layers[0].type.lower()
    if len(shape) > 1 and first == "dense":
        model.add(keras.layers.Flatten(name="dlcli_flatten"))
    if config.data.source == "audio" and len(shape) == 1 and wants_channels(first):
        model.add(keras.layers.Reshape((*shape, 1), name="dlcli_channel"))

    mixed = choices.precision != "float32"
    layers = []
    shapes_ok = True
    for index, spec in enumerate(config.model.layers):
        path = ("model", "layers", index)
        kwargs = spec.kwargs
        if mixed and index == len(config.model.layers) - 1 and "dtype" not in kwargs:
            kwargs["dtype"] = "float32"  # outputs in float32 keep the loss numerically stable
        try:
            layer = keras_names.construct("layer", spec.type, kwargs)
        except keras_names.NameProblem as exc:
            problems.append(config.problem((*path, exc.key) if exc.key else path, str(exc)))
            continue  # keep checking the other layers
        layers.append(layer)
        if shapes_ok:
            try:
                model.add(layer)
            except Exception as exc:  # noqa: BLE001 - Keras raises many types for a shape mismatch
                hint = _shape_hint(config)
                problems.append(
                    config.problem(
                        path,
                        f"does not fit the output of the layer before it: {first_line(exc)}{hint}",
                    )
                )
                shapes_ok = False

    problems += _embedding_problems(config, data)
    scale = target_scale(config, data)
    if scale is not None and shapes_ok and not problems:
        mean, std = scale["mean"], scale["std"]
        model.add(
            keras.layers.Rescaling(
                scale=std[0] if len(std) == 1 else std,
                offset=mean[0] if len(mean) == 1 else mean,
                name="dlcli_target_units",
                dtype="float32",
            )
        )

    compiled = {}
    for key, make in (("optimizer", keras_names.make_optimizer), ("loss", keras_names.make_loss)):
        try:
            compiled[key] = make(getattr(config.compile, key))
        except keras_names.NameProblem as exc:
            problems.append(
                config.problem(("compile", key, *([exc.key] if exc.key else [])), str(exc))
            )
    metrics = []
    for index, spec in enumerate(config.compile.metrics):
        try:
            metrics.append(keras_names.make_metric(spec))
        except keras_names.NameProblem as exc:
            problems.append(config.problem(("compile", "metrics", index), str(exc)))
    if len(metrics) == len(config.compile.metrics):  # every name known: the logged names are too
        names = [keras_names.logged_name(m) for m in metrics]
        problems += monitor_problems(config, names, data.val is not None)

    if "loss" in compiled:
        units = (
            model.output_shape[-1]
            if shapes_ok and not problems
            else config.model.layers[-1].kwargs.get("units")
        )
        if isinstance(units, int):
            problems += output_problems(config, data, units, layers, compiled["loss"])
    if problems:
        raise ConfigError(problems)

    model.compile(
        optimizer=compiled["optimizer"],
        loss=compiled["loss"],
        loss_weights=loss_weight(compiled["loss"], scale),
        metrics=metrics,
        jit_compile=choices.jit_compile,
        steps_per_execution=choices.steps_per_execution,
    )
    return model


SEQUENCE_LAYERS = ("stftspectrogram", "lstm", "gru", "simplernn", "bidirectional", "convlstm1d")


def wants_channels(layer_type: str) -> bool:
    """Whether a first layer takes `(time, channels)` rather than a waveform `(time,)`: a
    recording then gets its one channel axis (MelSpectrogram and Dense take the waveform)."""
    name = layer_type.lower()
    return name in SEQUENCE_LAYERS or name.endswith("1d")


def _embedding_problems(config: Config, data: Dataset) -> list[Problem]:
    """Text's token ids must each have a row in the first Embedding."""
    text = getattr(data, "text", None)
    if text is None or text.output_mode != "int":
        return []
    ids = len(text.vocabulary) + 2  # the padding and unknown tokens first
    for index, spec in enumerate(config.model.layers):
        if spec.type.lower() == "embedding":
            dim = spec.kwargs.get("input_dim")
            if isinstance(dim, int) and dim < ids:
                return [
                    config.problem(
                        ("model", "layers", index, "input_dim"),
                        f"is {dim}, but the vocabulary has {ids} token ids; remove input_dim "
                        f"(dlcli sets it to the vocabulary's size) or make it at least {ids}",
                    )
                ]
            break
    return []


def _shape_hint(config: Config) -> str:
    """What a media run can change when a layer does not fit its input."""
    d = config.data
    less = "or shrink less before this layer (padding: same, fewer poolings)"
    if d.image_size is not None:
        height, width = d.image_size
        return f"; the images are {height}x{width} (data.image_size): make them larger, {less}"
    if d.source == "text" and d.text is not None and d.text.output_mode == "int":
        return (
            f"; each document is {d.text.sequence_length} token ids (data.text.sequence_length): "
            f"make it longer, {less}"
        )
    if d.source == "audio" and d.output_sequence_length is not None:
        return (
            f"; each recording is {d.output_sequence_length} samples "
            f"(data.output_sequence_length): make it longer, {less}"
        )
    return ""


def target_scale(config: Config, data: Dataset) -> dict | None:
    """A regression target's training-split mean and standard deviation (one per column),
    which the model's last layer (`dlcli_target_units`) multiplies and adds back: the network
    learns a standardised target, and every output is in the target's units. None when
    `data.scale_target` (auto: every regression) leaves the target as it is."""
    setting = config.data.scale_target
    if setting is False or data.task != "regression":
        if setting is True:
            raise ConfigError(
                config.problem(
                    ("data", "scale_target"),
                    "scales a regression target, and this is a classification; remove it",
                )
            )
        return None
    y = np.asarray(data.train.y, dtype="float64").reshape(len(data.train.y), -1)
    mean, std = y.mean(axis=0), y.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


# A loss's power of the target's scale: dividing by std**power makes it the loss of the
# standardised target (its gradients as if training on it); other losses are left as they are.
SCALE_POWER = {
    "MeanSquaredError": 2,
    "Huber": 2,
    "LogCosh": 2,
    "MeanAbsoluteError": 1,
}


def loss_weight(loss, scale: dict | None) -> float | None:
    """The `loss_weights` that makes the loss that of the standardised target (None: none)."""
    if scale is None:
        return None
    power = SCALE_POWER.get(type(loss).__name__)
    if power is None:
        return None
    return float(1.0 / np.mean(np.square(scale["std"])) ** (power / 2))


def parameter_counts(model) -> dict:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def layer_table(model) -> list[dict]:
    """One row per layer: name, type, output shape, parameters."""
    return [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": str(tuple(layer.output.shape)) if hasattr(layer, "output") else "?",
            "params": int(layer.count_params()),
        }
        for layer in model.layers
    ]
