"""What goes in front of the user's layers so that the saved model takes raw features:
normalisation (`data.normalize`) with statistics of the training split only, or, for a
table, the `TableEncoder` that also fills missing numbers and encodes categories.

Statistics are gathered over the split's batches (merged exactly, in float64), so a split
that is read from disk batch by batch gets the same numbers as one held in memory.

Example:
    >>> layer = normalization_layer(keras, "standard", dataset.train, (64,))
    >>> layer.name
    'dlcli_normalize'
"""

from __future__ import annotations

import numpy as np

NORMALIZE_LAYER = "dlcli_normalize"
TABLE_LAYER = "dlcli_table"


def input_layer(keras, mode, data, shape: tuple):
    """The first layer after the input: a table's encoder, else a Normalization layer (None
    for `normalize: none`)."""
    if data.preprocessing is not None:
        from dlcli.data.tables.encoder import TableEncoder

        return TableEncoder(**data.preprocessing.layer_kwargs(), name=TABLE_LAYER)
    return normalization_layer(keras, mode, data.train, shape)


def _axes(shape: tuple) -> tuple[int | None, tuple | None]:
    """(Normalization axis, axes reduced per batch) for samples of `shape`."""
    if len(shape) == 1:  # a table: one statistic per feature
        return -1, (0,)
    if shape[-1] <= 4:  # images with channels: one per channel
        return -1, tuple(range(len(shape)))
    return None, None  # grayscale images: one for every pixel


def statistics(batches, shape: tuple, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of the samples in `batches`, reshaped to `shape`: mean and standard
    deviation for 'standard', minimum and range for 'minmax'. Chunks merge exactly (Chan's
    parallel formula), so one batch or many give the same result."""
    _, reduce = _axes(shape)
    count, mean, m2, low, high = 0, 0.0, 0.0, None, None
    for batch in batches:
        x = batch.reshape((len(batch), *shape)).astype("float64")
        n = int(np.prod([x.shape[a] for a in reduce])) if reduce is not None else x.size
        if n == 0:
            continue
        if mode == "minmax":
            b_low, b_high = x.min(axis=reduce), x.max(axis=reduce)
            low = b_low if low is None else np.minimum(low, b_low)
            high = b_high if high is None else np.maximum(high, b_high)
            continue
        b_mean = x.mean(axis=reduce)
        b_m2 = np.square(x - (b_mean if reduce is None else np.expand_dims(b_mean, reduce))).sum(
            axis=reduce
        )
        total = count + n
        delta = b_mean - mean
        mean = mean + delta * n / total
        m2 = m2 + b_m2 + np.square(delta) * count * n / total
        count = total
    if mode == "minmax":
        return np.asarray(low), np.asarray(high - low)
    return np.asarray(mean), np.sqrt(np.asarray(m2) / max(count, 1))


def normalization_layer(keras, mode, train, shape: tuple):
    """A Normalization layer holding the training split's statistics (None for `none`).

    Args:
        keras: the Keras module.
        mode: `standard`, `minmax`, `none`, or a number to divide by (255 for pixels).
        train: the training `Split`.
        shape: the model's input shape (the features are reshaped to it).
    """
    if mode == "none":
        return None
    axis, _ = _axes(shape)
    if isinstance(mode, float):
        mean, scale = np.zeros(()), np.full((), mode)
    else:
        mean, scale = statistics(train.feature_batches(), shape, mode)
    # A constant column carries no information; dividing by ~0 would blow unseen values up.
    scale = np.where(np.asarray(scale) > 1e-12, scale, 1.0)
    return keras.layers.Normalization(
        axis=axis,
        mean=np.asarray(mean).tolist(),
        variance=np.square(scale).tolist(),
        name=NORMALIZE_LAYER,
    )


def input_dtype(data) -> str | None:
    """The model input's dtype where it is not float32: text's token ids are int32."""
    text = getattr(data, "text", None)
    return "int32" if text is not None and text.output_mode == "int" else None


def saved_form(keras, model, text):
    """The model as model.keras keeps it: for text, the run's `TextVectorization` in front
    (built from `text`, its vocabulary), so the file takes raw strings (on TensorFlow,
    `model.predict(np.array(texts, dtype=object))`); compiled as `model` is."""
    if text is None:
        return model
    full = keras.Sequential(
        [keras.Input(shape=(), dtype="string"), text.layer(keras), *model.layers],
        name=model.name,
    )
    config = model.get_compile_config()
    if config:
        full.compile_from_config({**config, "jit_compile": False})  # XLA takes no strings
    return full


def without_vectorizer(keras, model):
    """(the model on token ids, its `TextVectorization` or None) of a model.keras: what
    dlcli runs on every backend (the vectorizer runs outside the compiled model)."""
    from dlcli.data.media.vocabulary import is_text_layer

    layers = model.layers
    if not layers or not is_text_layer(layers[0]):
        return model, None
    vectorizer = layers[0]
    shape = tuple(vectorizer.compute_output_shape((None,))[1:])
    dtype = "int32" if vectorizer.get_config().get("output_mode") == "int" else "float32"
    core = keras.Sequential([keras.Input(shape=shape, dtype=dtype), *layers[1:]], name=model.name)
    config = model.get_compile_config()
    if config:
        core.compile_from_config(config)
    return core, vectorizer
