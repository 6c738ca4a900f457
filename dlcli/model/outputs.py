"""A model's targets and outputs: labels in the form its loss wants, outputs as class
probabilities and predicted classes.

Used wherever labels go in (fit, evaluate) or predictions come out (test scores, the
confusion matrix, `dlcli predict`), so the rule for logits, sigmoid and one-hot is one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlcli.runtime.losses import ONE_HOT


def targets_for(model, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices -> one-hot when the model's loss wants one-hot labels; else unchanged."""
    if y.ndim == 1 and type(model.loss).__name__ in ONE_HOT:
        return np.eye(n_classes, dtype="float32")[y]
    return y


def class_probabilities(model, outputs: np.ndarray) -> np.ndarray:
    """Model outputs -> one probability per class (softmax/sigmoid applied to logits)."""
    return as_probabilities(outputs, getattr(model.loss, "from_logits", False))


def as_probabilities(outputs: np.ndarray, from_logits: bool) -> np.ndarray:
    """`class_probabilities` for outputs whose model is not at hand (`from_logits`: the
    run's loss takes logits)."""
    outputs = np.asarray(outputs, dtype="float64")
    if from_logits:
        if outputs.shape[-1] == 1:
            outputs = 1 / (1 + np.exp(-outputs))
        else:
            outputs = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
            outputs /= outputs.sum(axis=-1, keepdims=True)
    if outputs.shape[-1] == 1:
        outputs = np.concatenate([1 - outputs, outputs], axis=-1)
    return outputs


def score(
    model, split, targets: Callable[[np.ndarray], np.ndarray], classes: bool, between=None
) -> tuple[dict[str, float], np.ndarray | None]:
    """The compiled loss and metrics of `model` on a split, as `model.evaluate` reports them
    (regularization losses included), and its predicted classes when `classes`: one eager
    pass over `split.feature_batches()`, with no evaluate or predict function traced, which
    on the splits dlcli scores costs more than the pass. `targets` turns the split's labels
    into the loss's form; `between` (if given) is called after each batch (a stop request
    is raised there)."""
    from dlcli.runtime.keras_import import keras_module

    ops = keras_module().ops
    model.reset_metrics()
    total, seen, found = 0.0, 0, []
    for x in split.feature_batches():
        y = targets(np.asarray(split.y[seen : seen + len(x)]))
        y_pred = model(x, training=False)
        total += float(
            ops.convert_to_numpy(model.compute_loss(x, y, y_pred, training=False))
        ) * len(x)
        seen += len(x)
        model.compute_metrics(x, y, y_pred)
        if classes:
            outputs = ops.convert_to_numpy(y_pred)
            found.append(class_probabilities(model, outputs).argmax(axis=-1))
        if between is not None:
            between()
    scored = {k: float(ops.convert_to_numpy(v)) for k, v in model.get_metrics_result().items()}
    model.reset_metrics()
    scored["loss"] = total / max(seen, 1)
    predicted = (np.concatenate(found) if found else np.zeros(0, "int64")) if classes else None
    return scored, predicted
