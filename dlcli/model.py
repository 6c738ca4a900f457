"""The model: a keras.Sequential stack from `model.layers`, checked against the data.

`resolve_model_config` fills in what the config left out (the loss, the input shape, the
last Dense layer's units) so that the resolved config reproduces the run. `build_model`
puts a `Normalization` layer fitted on the training split in front of the user's stack,
so the saved model takes raw features, then compiles it. Mismatches Keras would only
report mid-fit (3 units for 10 classes, softmax with `from_logits=True`, a sparse loss
with one-hot labels, binary cross-entropy on a multi-unit softmax) are `ConfigError`s here,
all of them at once, each pointing at the config line.
"""

from __future__ import annotations

import numpy as np

from dlcli import registry
from dlcli.config import Config, KerasObject
from dlcli.data import Dataset
from dlcli.errors import ConfigError, Problem

SPARSE_LOSSES = {"SparseCategoricalCrossentropy"}
ONE_HOT_LOSSES = {"CategoricalCrossentropy", "CategoricalFocalCrossentropy", "KLDivergence", "CategoricalHinge"}
BINARY_LOSSES = {"BinaryCrossentropy", "BinaryFocalCrossentropy", "Hinge", "SquaredHinge"}
NORMALIZE_LAYER = "dlcli_normalize"


def resolve_model_config(config: Config, data: Dataset) -> None:
    """Fill the loss, input shape and output units the config left out, in place."""
    if config.compile.loss is None:
        default = (
            "mean_squared_error" if data.task == "regression"
            else "categorical_crossentropy" if data.one_hot
            else "sparse_categorical_crossentropy"
        )
        config.compile.loss = KerasObject(type=default)
    if config.model.input_shape is None:
        config.model.input_shape = list(data.input_shape)
    last = config.model.layers[-1]
    if last.type.lower() == "dense" and "units" not in last.kwargs:
        binary = _loss_class(config) in BINARY_LOSSES
        units = 1 if data.task == "regression" or binary else data.n_classes
        last.__pydantic_extra__["units"] = units


def _loss_class(config: Config) -> str | None:
    try:
        return registry.loss_name(config.compile.loss)
    except registry.NameProblem:
        return None


def _output_activation(layers: list) -> str | None:
    """The activation the stack ends with ('softmax', 'sigmoid', ...), if it says one."""
    for layer in reversed(layers):
        name = type(layer).__name__
        if name == "Softmax":
            return "softmax"
        activation = getattr(layer, "activation", None)
        if activation is not None:
            label = getattr(activation, "__name__", str(activation))
            return None if label == "linear" else label
        if name not in ("Dropout", "ActivityRegularization", "GaussianNoise", "GaussianDropout", "AlphaDropout"):
            return None
    return None


def normalization_layer(keras, config: Config, x_train: np.ndarray):
    """A Normalization layer holding training-split statistics (None for `normalize: none`)."""
    mode = config.data.normalize
    if mode == "none":
        return None
    rank = x_train.ndim - 1
    if rank == 1:
        axis, reduce = -1, (0,)
    elif x_train.shape[-1] <= 4:  # images with channels: per channel
        axis, reduce = -1, tuple(range(x_train.ndim - 1))
    else:  # grayscale images: one statistic for all pixels
        axis, reduce = None, None
    x = x_train.astype("float64")
    if isinstance(mode, float):
        mean, scale = np.zeros(()), np.full((), mode)
    elif mode == "minmax":
        low, high = x.min(axis=reduce), x.max(axis=reduce)
        mean, scale = low, high - low
    else:
        mean, scale = x.mean(axis=reduce), x.std(axis=reduce)
    # A constant column carries no information; dividing by ~0 would blow unseen values up.
    scale = np.where(np.asarray(scale) > 1e-12, scale, 1.0)
    return keras.layers.Normalization(
        axis=axis, mean=np.asarray(mean).tolist(), variance=np.square(scale).tolist(), name=NORMALIZE_LAYER,
    )


def build_model(config: Config, data: Dataset, keras, choices: dict):
    """Build and compile the model; raise ConfigError with every problem found."""
    resolve_model_config(config, data)
    problems: list[Problem] = []
    shape = tuple(config.model.input_shape)
    if int(np.prod(shape)) != int(np.prod(data.input_shape)):
        problems.append(config.problem(("model", "input_shape"), f"{list(shape)} does not fit the data's {list(data.input_shape)} features per sample"))
        raise ConfigError(problems)

    model = keras.Sequential(name=config.name.replace(".", "_"))
    model.add(keras.Input(shape=shape))
    norm = normalization_layer(keras, config, data.x_train.reshape((len(data.x_train), *shape)))
    if norm is not None:
        model.add(norm)
    first = config.model.layers[0].type.lower()
    if len(shape) > 1 and first == "dense":
        model.add(keras.layers.Flatten(name="dlcli_flatten"))

    mixed = choices["precision"] != "float32"
    layers = []
    shapes_ok = True
    for index, spec in enumerate(config.model.layers):
        path = ("model", "layers", index)
        kwargs = spec.kwargs
        if mixed and index == len(config.model.layers) - 1 and "dtype" not in kwargs:
            kwargs["dtype"] = "float32"  # outputs in float32 keep the loss numerically stable
        try:
            layer = registry.construct("layer", spec.type, kwargs)
        except registry.NameProblem as exc:
            problems.append(config.problem((*path, exc.key) if exc.key else path, str(exc)))
            continue  # keep checking the other layers
        layers.append(layer)
        if shapes_ok:
            try:
                model.add(layer)
            except Exception as exc:  # noqa: BLE001 - Keras raises many types for a shape mismatch
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                problems.append(config.problem(path, f"does not fit the output of the layer before it: {text}"))
                shapes_ok = False

    optimizer = loss = None
    metrics = []
    try:
        optimizer = registry.make_optimizer(config.compile.optimizer)
    except registry.NameProblem as exc:
        problems.append(config.problem(("compile", "optimizer", *([exc.key] if exc.key else [])), str(exc)))
    try:
        loss = registry.make_loss(config.compile.loss)
    except registry.NameProblem as exc:
        problems.append(config.problem(("compile", "loss", *([exc.key] if exc.key else [])), str(exc)))
    for index, spec in enumerate(config.compile.metrics):
        try:
            metrics.append(registry.make_metric(spec))
        except registry.NameProblem as exc:
            problems.append(config.problem(("compile", "metrics", index), str(exc)))

    if loss is not None:
        units = model.output_shape[-1] if shapes_ok and not problems else config.model.layers[-1].kwargs.get("units")
        if isinstance(units, int):
            problems += _output_problems(config, data, units, layers, loss)
    if problems:
        raise ConfigError(problems)

    model.compile(
        optimizer=optimizer, loss=loss, metrics=metrics,
        jit_compile=choices["jit_compile"], steps_per_execution=choices["steps_per_execution"],
    )
    return model


def _output_problems(config: Config, data: Dataset, units: int, layers, loss) -> list[Problem]:
    """The last layer (its output units) against the data and the loss."""
    last = ("model", "layers", len(config.model.layers) - 1)
    loss_path = ("compile", "loss")
    name = type(loss).__name__
    activation = _output_activation(layers)
    from_logits = bool(getattr(loss, "from_logits", False))
    out = []
    if data.task == "regression":
        want = 1 if data.y_train.ndim == 1 else data.y_train.shape[1]
        if units != want:
            out.append(config.problem(last, f"the model ends with {units} units but the regression target has {want}; set units: {want}"))
        if activation in ("softmax",):
            out.append(config.problem(last, "a softmax output cannot regress a number; drop the activation"))
        return out
    k = data.n_classes
    if name in SPARSE_LOSSES and data.one_hot:
        out.append(config.problem(loss_path, "sparse_categorical_crossentropy takes class indices, but the labels are one-hot; use categorical_crossentropy"))
    if name in BINARY_LOSSES:
        if units != 1 and activation == "softmax":
            out.append(config.problem(loss_path, f"binary cross-entropy on a {units}-unit softmax; use sparse_categorical_crossentropy, or end with Dense(1, sigmoid)"))
        elif k > 2 and not data.one_hot:
            out.append(config.problem(loss_path, f"binary loss for {k} classes; use sparse_categorical_crossentropy"))
        elif units not in (1, k):
            out.append(config.problem(last, f"the model ends with {units} units; a binary loss wants 1"))
    elif units != k:
        out.append(config.problem(last, f"the model ends with {units} units but the data has {k} classes; set units: {k}"))
    if from_logits and activation in ("softmax", "sigmoid"):
        out.append(config.problem(loss_path, f"from_logits: true, but the last layer already applies {activation}; drop the activation or set from_logits: false"))
    return out


def targets_for(model, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices -> one-hot when the loss wants one-hot labels; otherwise unchanged."""
    if y.ndim == 1 and type(model.loss).__name__ in ONE_HOT_LOSSES:
        return np.eye(n_classes, dtype="float32")[y]
    return y


def class_probabilities(model, outputs: np.ndarray) -> np.ndarray:
    """Model outputs -> one probability per class (softmax/sigmoid applied to logits)."""
    outputs = np.asarray(outputs, dtype="float64")
    if getattr(model.loss, "from_logits", False):
        if outputs.shape[-1] == 1:
            outputs = 1 / (1 + np.exp(-outputs))
        else:
            outputs = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
            outputs /= outputs.sum(axis=-1, keepdims=True)
    if outputs.shape[-1] == 1:
        outputs = np.concatenate([1 - outputs, outputs], axis=-1)
    return outputs


def predicted_classes(model, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Class indices for x: eager forward passes in chunks (no tracing of a predict function,
    which costs more than the pass itself on the small test splits dlcli reports on)."""
    from keras import ops

    outputs = [ops.convert_to_numpy(model(x[i:i + chunk], training=False)) for i in range(0, len(x), chunk)]
    return class_probabilities(model, np.concatenate(outputs)).argmax(axis=-1)


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
