"""Pre-flight checks: every problem a config has, found before any run folder exists.

Each check returns `Problem`s pointing at the config's own lines, so `dlcli validate` and
`dlcli train` report them all at once (exit 2):

- `name_problems`: Keras names and arguments in config data that failed the schema, so a
  schema error and an unknown layer come out together;
- `config_problems`: callbacks (names, arguments, file names that must stay inside the run
  folder) and runtime settings the chosen backend cannot honour;
- `output_problems`: the model's last layer against the data and the loss (3 units for 10
  classes, softmax with `from_logits`, a sparse loss on one-hot labels, ...).
"""

from __future__ import annotations

from pathlib import Path

from dlcli import keras_names
from dlcli.errors import Problem
from dlcli.losses import BINARY, INDICES
from dlcli.runtime import runtime_problems

# Keyword arguments of keras.callbacks that name files: kept inside the run folder.
PATH_ARGUMENTS = ("filename", "filepath", "log_dir", "backup_dir")
# Layers that pass their input's activation through (the output's activation is before them).
PASS_THROUGH = ("Dropout", "ActivityRegularization", "GaussianNoise", "GaussianDropout", "AlphaDropout")


def name_problems(raw: dict, locate) -> list[Problem]:
    """Unknown Keras names and arguments in raw config data; `locate(path, message)` makes
    each a Problem at its line (see `dlcli.config.locator`)."""
    return [locate(path, message) for path, message in keras_names.name_problems(raw)]


def config_problems(config) -> list[Problem]:
    """The callbacks' names, arguments and file names, and the runtime settings."""
    problems = []
    for index, spec in enumerate(config.training.callbacks):
        try:
            keras_names.check("callback", spec.type, spec.kwargs)
        except keras_names.NameProblem as exc:
            problems.append(config.problem(("training", "callbacks", index, *([exc.key] if exc.key else [])), str(exc)))
        for key in PATH_ARGUMENTS:
            value = spec.kwargs.get(key)
            if isinstance(value, str) and not stays_inside(value):
                problems.append(config.problem(
                    ("training", "callbacks", index, key),
                    f"{key} {value!r} leaves the run folder; give a name inside it, such as 'log.csv'",
                ))
    problems += [config.problem(path, message) for path, message in runtime_problems(config.runtime)]
    return problems


def stays_inside(value: str) -> bool:
    """A relative path that cannot climb out of the folder it is joined to."""
    path = Path(value)
    return not path.is_absolute() and ".." not in path.parts


def output_activation(layers: list) -> str | None:
    """The activation the stack ends with ('softmax', 'sigmoid', ...), if it says one."""
    for layer in reversed(layers):
        name = type(layer).__name__
        if name == "Softmax":
            return "softmax"
        activation = getattr(layer, "activation", None)
        if activation is not None:
            label = getattr(activation, "__name__", str(activation))
            return None if label == "linear" else label
        if name not in PASS_THROUGH:
            return None
    return None


def output_problems(config, data, units: int, layers: list, loss) -> list[Problem]:
    """The last layer (its output units and activation) against the data and the loss."""
    last = ("model", "layers", len(config.model.layers) - 1)
    loss_path = ("compile", "loss")
    name = type(loss).__name__
    activation = output_activation(layers)
    from_logits = bool(getattr(loss, "from_logits", False))
    out = []
    if data.task == "regression":
        want = data.target_width
        if units != want:
            out.append(config.problem(last, f"the model ends with {units} units but the regression target has {want}; set units: {want}"))
        if activation == "softmax":
            out.append(config.problem(last, "a softmax output cannot regress a number; drop the activation"))
        return out
    k = data.n_classes
    if name in INDICES and data.one_hot:
        out.append(config.problem(loss_path, "sparse_categorical_crossentropy takes class indices, but the labels are one-hot; use categorical_crossentropy"))
    if name in BINARY:
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
