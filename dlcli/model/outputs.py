"""A model's targets and outputs: labels in the form its loss wants, outputs as class
probabilities and predicted classes.

Used wherever labels go in (fit, evaluate) or predictions come out (test scores, the
confusion matrix, `dlcli predict`), so the rule for logits, sigmoid and one-hot is one.
"""

from __future__ import annotations

import numpy as np

from dlcli.runtime.losses import ONE_HOT


def targets_for(model, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices -> one-hot when the model's loss wants one-hot labels; else unchanged."""
    if y.ndim == 1 and type(model.loss).__name__ in ONE_HOT:
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


def predicted_classes(model, batches) -> np.ndarray:
    """Class indices for feature batches (an iterable of arrays): eager forward passes, with
    no tracing of a predict function, which costs more than the pass itself on the small
    splits dlcli reports on."""
    from dlcli.runtime.keras_import import keras_module

    ops = keras_module().ops
    classes = [
        class_probabilities(model, ops.convert_to_numpy(model(x, training=False))).argmax(axis=-1)
        for x in batches
    ]  # batch by batch: a streamed split's outputs are never all held
    return np.concatenate(classes) if classes else np.zeros(0, dtype="int64")
