"""`training.class_weight`: how much each class counts in the training loss.

The config gives `balanced` or a weight per class label; the schema (`dlcli.config.schema`)
checks the numbers, and `resolve` matches the labels to the data's classes once the data is
loaded: a label is spelt as the data spells it (labels.json), and a number matches the class
of the same number whether the target holds it as a number or as text (`1` is the class `1`
or `'1'`). Classes left out weigh 1. `balanced` is scikit-learn's
`compute_class_weight("balanced", ...)` on the training split's targets, the test and
validation samples already set apart.

Training gives every training sample its class's weight (`sample_weights`), on every backend
and for arrays and streamed batches alike: Keras refuses its own `class_weight` argument for
some dataset inputs (keras-team/keras#20542) and weighs per-sample weights everywhere. The
validation and test splits are not weighted, as with Keras's `class_weight`. run.json records
the weight of each label (`recorded`).

Example:
    >>> weights = resolve(config, data)  # training.class_weight: {'>50K': 3}
    >>> recorded(weights, data.labels)
    {'<=50K': 1.0, '>50K': 3.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from dlcli.errors import ConfigError, Problem, did_you_mean

PATH = ("training", "class_weight")


def resolve(config, data) -> np.ndarray | None:
    """The weight of each class index (None without `training.class_weight`); a ConfigError
    at the config's line when the weights do not fit the data."""
    given = config.training.class_weight
    if given is None:
        return None
    if data.task != "classification" or data.labels is None:
        raise ConfigError(
            config.problem(
                PATH,
                "weights the classes of a classification, but this run is a regression; "
                "remove it (or set data.task: classification if the target holds classes)",
            )
        )
    targets = class_indices(data.train.y)
    if given == "balanced":
        weights = balanced(targets, data.n_classes)
    else:
        weights = _mapped(config, given, data.labels)
    if not np.any(weights[np.unique(targets)] > 0):
        raise ConfigError(
            config.problem(
                PATH,
                "every class of the training split weighs 0, so nothing would be learned; "
                "give at least one class a weight above 0",
            )
        )
    return weights


def balanced(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's balanced weights, `n_samples / (n_classes * count)`, of the classes in
    `targets` (class indices); a class with no training sample keeps 1."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(targets)
    weights = np.ones(n_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=targets)
    return weights


def class_indices(y: np.ndarray) -> np.ndarray:
    """Targets (class indices, or one-hot rows) -> one class index per sample."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=-1)
    return y.reshape(len(y)).astype("int64", copy=False)


def sample_weights(weights: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """targets -> each sample's weight (float32), for `model.fit`; None without weights."""
    if weights is None:
        return None
    table = np.asarray(weights, dtype="float32")
    return lambda y: table[class_indices(y)]


def recorded(weights: np.ndarray | None, labels: list | None) -> dict | None:
    """What run.json records: each label (as text) with its weight, in the classes' order."""
    if weights is None or labels is None:
        return None
    return {str(label): float(weight) for label, weight in zip(labels, weights)}


def _mapped(config, given: dict, labels: list) -> np.ndarray:
    """The weights of a `{label: weight}` mapping, 1 for the classes it leaves out."""
    weights = np.ones(len(labels))
    named: dict[int, object] = {}
    for key, weight in given.items():
        index = _class_of(key, labels)
        if index is None:
            shown = ", ".join(map(str, labels[:20])) + (" ..." if len(labels) > 20 else "")
            hint = did_you_mean(str(key), [str(label) for label in labels])
            raise ConfigError(
                _problem(
                    config,
                    key,
                    f"no class {key!r} in the target{hint}; the classes are: {shown}",
                )
            )
        if index in named:
            raise ConfigError(
                _problem(
                    config,
                    key,
                    f"{named[index]!r} and {key!r} are the same class {labels[index]!r}; "
                    "give its weight once",
                )
            )
        named[index] = key
        weights[index] = weight
    return weights


def _class_of(key, labels: list) -> int | None:
    """The index of the class `key` names: the label spelt alike, else the same number."""
    text = str(key)
    for index, label in enumerate(labels):
        if str(label) == text:
            return index
    number = _number(key)
    if number is None:
        return None
    for index, label in enumerate(labels):
        if _number(label) == number:
            return index
    return None


def _number(value) -> float | None:
    """`value` as a finite number (a number, or text that reads as one), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, np.number)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _problem(config, key, message: str) -> Problem:
    """A problem at the line of `key` in the mapping (the line of class_weight where the
    key has none: a key given by `--set`)."""
    where = config.where(PATH)
    for part in (key, str(key)):
        found = config.where((*PATH, part))
        if found != where:
            where = found
            break
    return Problem(message, where=where, path=f"training.class_weight.{key}")


__all__ = ["balanced", "class_indices", "recorded", "resolve", "sample_weights"]
