"""Text's preprocessing: Keras's `TextVectorization` adapted on the training split only,
kept in the run's preprocessing.json and inside its model.keras.

`TextPreprocessing.fit` adapts the layer on the training documents (streamed a piece at a
time), and keeps what it learned: the vocabulary, most frequent first, and for `tf_idf` each
token's inverse document frequency. `layer` makes the same layer again from them (exactly:
the same outputs), which is how `predict`, `evaluate` and the exported copies turn raw text
into the model's input on every backend; `vectorize` does it for a batch of documents.
TensorFlow does the string work, as Keras's layer does on every backend.

Example:
    >>> text = TextPreprocessing.fit(config.data.text, train_pieces)
    >>> text.vectorize(np.array(["a fine film"], dtype=object)).shape
    (1, 200)
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

import numpy as np

from dlcli.errors import ConfigError, Problem

TEXT_LAYER = "dlcli_text"
SHOWN_TOKENS = 20  # the most frequent tokens run.json and `show` list
FORMAT_VERSION = 1


@dataclass
class TextPreprocessing:
    """What the run's `TextVectorization` learned, and how it was set."""

    output_mode: str
    max_tokens: int
    sequence_length: int
    ngrams: int
    standardize: str
    vocabulary: list[str]  # without the padding and unknown tokens, most frequent first
    idf: list[float] | None = None  # tf_idf: the unknown token's first, then the vocabulary's
    documents: int = 0  # training documents adapted on
    column: str | None = None  # a table's text column
    oov: dict = field(default_factory=dict)  # split -> share of tokens not in the vocabulary

    def __post_init__(self):
        self._layers: dict = {}  # made once per purpose (not fields: asdict leaves them out)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, settings, pieces, column: str | None = None) -> TextPreprocessing:
        """Adapt a TextVectorization on `pieces` (arrays of training documents)."""
        from dlcli.runtime.keras_import import keras_module, let_tensorflow_in

        let_tensorflow_in()
        import tensorflow as tf

        keras = keras_module()
        layer = keras.layers.TextVectorization(**_kwargs(settings))
        counted = [0]

        def documents():
            for piece in pieces:
                counted[0] += len(piece)
                yield np.asarray(piece, dtype=object)

        stream = tf.data.Dataset.from_generator(
            documents, output_signature=tf.TensorSpec(shape=(None,), dtype=tf.string)
        )
        layer.adapt(stream)
        vocabulary = [str(t) for t in layer.get_vocabulary(include_special_tokens=False)]
        idf = None
        if settings.output_mode == "tf_idf":
            idf = [float(v) for v in np.asarray(layer._lookup_layer.idf_weights)]
        return cls(
            output_mode=settings.output_mode,
            max_tokens=settings.max_tokens,
            sequence_length=settings.sequence_length,
            ngrams=settings.ngrams,
            standardize=settings.standardize,
            vocabulary=vocabulary,
            idf=idf,
            documents=counted[0],
            column=column,
        )

    # ------------------------------------------------------------ the model's side

    @property
    def width(self) -> int:
        """Numbers per document the model takes."""
        if self.output_mode == "int":
            return self.sequence_length
        return len(self.vocabulary) + 1  # the unknown token first

    @property
    def sample_shape(self) -> tuple:
        return (self.width,)

    @property
    def dtype(self) -> str:
        return "int32" if self.output_mode == "int" else "float32"

    def layer(self, keras, name: str = TEXT_LAYER):
        """A TextVectorization layer holding this vocabulary (the same outputs as the one
        adapted)."""
        extra = {"idf_weights": self.idf[1:]} if self.idf is not None else {}
        return keras.layers.TextVectorization(
            **_kwargs(self), vocabulary=list(self.vocabulary), name=name, **extra
        )

    def vectorize(self, texts: np.ndarray) -> np.ndarray:
        """Documents (an object array of str) as the model's input, `(n, width)`."""
        if len(texts) == 0:
            return np.zeros((0, self.width), dtype=self.dtype)
        values = self._layer("model")(np.asarray(texts, dtype=object))
        return np.asarray(values).astype(self.dtype, copy=False)

    def unknown_share(self, pieces) -> float | None:
        """The share of `pieces`' tokens (n-grams included) that are not in the vocabulary."""
        layer = self._layer("tokens")
        unknown = total = 0
        for piece in pieces:
            if len(piece) == 0:
                continue
            ids = np.asarray(layer(np.asarray(piece, dtype=object)))  # padded with 0
            unknown += int(np.count_nonzero(ids == 1))
            total += int(np.count_nonzero(ids))
        return round(unknown / total, 6) if total else None

    def _layer(self, purpose: str):
        """The layer made once per purpose: `model` (this run's), `tokens` (every token's id)."""
        with self._lock:
            if purpose not in self._layers:
                from dlcli.runtime.keras_import import keras_module, let_tensorflow_in

                let_tensorflow_in()
                keras = keras_module()
                if purpose == "model":
                    self._layers[purpose] = self.layer(keras)
                else:
                    settings = {**_kwargs(self), "output_mode": "int", "max_tokens": None}
                    settings.pop("output_sequence_length", None)  # each batch's longest
                    self._layers[purpose] = keras.layers.TextVectorization(
                        **settings, vocabulary=list(self.vocabulary)
                    )
            return self._layers[purpose]

    # ------------------------------------------------------------ preprocessing.json

    def summary(self) -> dict:
        """What run.json and `show` say of it: the sizes, the most frequent tokens, the
        unknown share per split."""
        return {
            "output_mode": self.output_mode,
            "vocabulary_size": len(self.vocabulary) + (2 if self.output_mode == "int" else 1),
            "most_frequent": self.vocabulary[:SHOWN_TOKENS],
            "documents": self.documents,
            "unknown_token_share": dict(self.oov),
            **({"sequence_length": self.sequence_length} if self.output_mode == "int" else {}),
        }

    def to_json(self) -> dict:
        data = asdict(self)
        return {"version": FORMAT_VERSION, "kind": "text", "text": data}

    @classmethod
    def from_json(cls, data, where: str) -> TextPreprocessing:
        """From preprocessing.json; a ConfigError naming the file when it is damaged."""
        try:
            fields = dict(data["text"])
            if not isinstance(fields.get("vocabulary"), list):
                raise TypeError("vocabulary")
            return cls(**fields)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                Problem(
                    "is damaged (no text vocabulary in it); restore it or retrain the run",
                    where=where,
                )
            ) from None


def _kwargs(settings) -> dict:
    """TextVectorization's arguments for `settings` (a TextConfig or a TextPreprocessing)."""
    kwargs = {
        "max_tokens": settings.max_tokens,
        "output_mode": settings.output_mode,
        "ngrams": settings.ngrams if settings.ngrams > 1 else None,
        "standardize": None if settings.standardize == "none" else settings.standardize,
    }
    if settings.output_mode == "int":
        kwargs["output_sequence_length"] = settings.sequence_length
    return kwargs


def is_text_layer(layer) -> bool:
    return type(layer).__name__ == "TextVectorization"


__all__ = ["TEXT_LAYER", "TextPreprocessing", "is_text_layer"]
