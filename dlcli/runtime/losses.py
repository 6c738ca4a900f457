"""What a loss expects: class indices, one-hot rows, a binary 0/1, or numbers.

One table serves every stage that needs to know: the task a config's loss implies (data),
the default loss and output units (model), the pre-flight checks of the output layer, and
the form of the labels handed to `fit`. Losses are named as Keras names them, after a
lookup through Keras's own registry, so `sparse_categorical_crossentropy`, `mse` and
`KLDivergence` all land on their class.

Example:
    >>> expects(KerasObject(type="sparse_categorical_crossentropy"))
    'indices'
    >>> task_of(KerasObject(type="mae"))
    'regression'
"""

from __future__ import annotations

from dlcli.runtime import keras_names

INDICES = {"SparseCategoricalCrossentropy", "CategoricalGeneralizedCrossEntropy"}
ONE_HOT = {
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "CategoricalHinge",
}
BINARY = {"BinaryCrossentropy", "BinaryFocalCrossentropy", "Hinge", "SquaredHinge"}


def loss_class(spec) -> str | None:
    """Keras's class name for a config's loss (`SparseCategoricalCrossentropy`), or None
    when the name is unknown (the model's checks report that)."""
    try:
        return keras_names.lookup("loss", spec.type).__name__
    except keras_names.NameProblem:
        return None


def expects(spec) -> str | None:
    """'indices', 'one_hot', 'binary' or 'numbers': the labels a loss is computed on."""
    name = loss_class(spec)
    if name is None:
        return None
    if name in INDICES:
        return "indices"
    if name in ONE_HOT:
        return "one_hot"
    if name in BINARY:
        return "binary"
    return "numbers"


def task_of(spec) -> str | None:
    """'classification' or 'regression' for a loss; None for an unknown name."""
    kind = expects(spec)
    return None if kind is None else ("regression" if kind == "numbers" else "classification")


def default_loss(task: str, one_hot: bool) -> str:
    """The loss a config without one gets: what a Keras user would write for the task."""
    if task == "regression":
        return "mean_squared_error"
    return "categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"
