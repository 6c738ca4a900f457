"""`TableEncoder`: the Keras layer a table's model starts with.

Its input is one float32 row per sample, one number per feature column: a numeric
column's value (NaN where the cell was missing), or a categorical column's index into the
training vocabulary (0 for a missing or unseen category; text becomes that index outside
the model, in `dlcli.data.tables.preprocessing`). The layer fills missing numbers with the training mean,
scales them (`data.normalize`), and turns each category index into a one-hot vector or a
trained embedding; the output is all of that side by side. It is written with `keras.ops`
only, so the same saved model runs on TensorFlow, JAX and PyTorch (Keras's own
StringLookup runs TensorFlow inside and could not).

Importing this module registers the layer for `keras.saving.load_model` (safe mode).

Example:
    >>> layer = TableEncoder(numeric=[0], fill=[38.6], offset=[38.6], scale=[13.6],
    ...                      categorical=[{"index": 1, "size": 9, "dim": 0}])
    >>> layer(np.array([[np.nan, 3.0]], "float32")).shape   # 1 number + a one-hot of 9
    (1, 10)
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dlcli")
class TableEncoder(keras.layers.Layer):
    """Numbers filled and scaled, categories one-hot or embedded, concatenated.

    Args:
        numeric: input positions of the numeric columns.
        fill: per numeric column, the value of a missing cell (the training mean).
        offset: per numeric column, subtracted after filling.
        scale: per numeric column, divided by after the offset.
        categorical: per categorical column, `{"index": input position, "size": categories
            + 1 (index 0: missing or unseen), "dim": embedding width, or 0 for one-hot}`.
        passthrough: the input position from which the inputs go out as they are (a text
            column's vector after the table's own columns), or None.
    """

    def __init__(
        self, numeric=(), fill=(), offset=(), scale=(), categorical=(), passthrough=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.passthrough = None if passthrough is None else int(passthrough)
        self.extra = 0  # inputs from `passthrough` on (a text column's vector), set by build
        self.numeric = [int(i) for i in numeric]
        self.fill = [float(v) for v in fill]
        self.offset = [float(v) for v in offset]
        self.scale = [float(v) for v in scale]
        self.categorical = [
            {"index": int(c["index"]), "size": int(c["size"]), "dim": int(c["dim"])}
            for c in categorical
        ]
        self.embeddings = [
            keras.layers.Embedding(c["size"], c["dim"], name=f"embedding_{c['index']}")
            for c in self.categorical
            if c["dim"]
        ]

    @property
    def width(self) -> int:
        """Numbers per sample this layer puts out."""
        return len(self.numeric) + sum(c["dim"] or c["size"] for c in self.categorical) + self.extra

    def build(self, input_shape):
        if self.passthrough is not None:
            self.extra = int(input_shape[-1]) - self.passthrough
        for embedding in self.embeddings:
            embedding.build((None,))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        parts = []
        if self.numeric:
            values = ops.take(x, self.numeric, axis=1)
            values = ops.where(
                ops.isnan(values), ops.convert_to_tensor(self.fill, "float32"), values
            )
            parts.append(
                (values - ops.convert_to_tensor(self.offset, "float32"))
                / ops.convert_to_tensor(self.scale, "float32")
            )
        embeddings = iter(self.embeddings)
        for column in self.categorical:
            codes = ops.take(x, column["index"], axis=1)
            codes = ops.cast(
                ops.clip(ops.where(ops.isnan(codes), 0.0, codes), 0, column["size"] - 1), "int32"
            )
            if column["dim"]:
                parts.append(ops.cast(next(embeddings)(codes), "float32"))
            else:
                parts.append(ops.one_hot(codes, column["size"], dtype="float32"))
        if self.passthrough is not None:
            parts.append(x[:, self.passthrough :])
        joined = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        return ops.cast(joined, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        if self.passthrough is not None:
            self.extra = int(input_shape[-1]) - self.passthrough
        return (input_shape[0], self.width)

    def get_config(self):
        return {
            **super().get_config(),
            "numeric": self.numeric,
            "fill": self.fill,
            "offset": self.offset,
            "scale": self.scale,
            "categorical": self.categorical,
            **({"passthrough": self.passthrough} if self.passthrough is not None else {}),
        }
