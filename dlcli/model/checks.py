"""Pre-flight checks: every problem a config has, found before any run folder exists.

Each check returns `Problem`s pointing at the config's own lines, so `dlcli validate` and
`dlcli train` report them all at once (exit 2):

- `name_problems`: Keras names and arguments in config data that failed the schema, so a
  schema error and an unknown layer come out together;
- `config_problems`: callback file names that must stay inside the run folder, and runtime
  settings the chosen backend cannot honour (no Keras import: the backend is not chosen yet);
- `callback_problems`: callbacks Keras does not know or will not build (after the import);
- `output_problems`: the model's last layer against the data and the loss (3 units for 10
  classes, softmax with `from_logits`, a sparse loss on one-hot labels, ...);
- `monitor_problems`: callbacks that watch a metric training never logs (`val_acuracy`).
"""

from __future__ import annotations

import importlib.util
import re
import string
from pathlib import Path

from dlcli.errors import Problem, did_you_mean
from dlcli.runtime import keras_names
from dlcli.runtime.choices import runtime_problems
from dlcli.runtime.losses import BINARY, INDICES

# Keyword arguments of keras.callbacks that name files: kept inside the run folder.
PATH_ARGUMENTS = ("filename", "filepath", "log_dir", "backup_dir")
# The folder callbacks are built under by `callback_problems`: never created.
UNWRITTEN = "dlcli-unwritten-run"
# A format field of a file name (`{epoch:02d}`, `{val_loss:.4f}`): a number's width, precision
# and type, without fill or alignment (`{epoch!s:.>2.0}` renders as '..').
NUMBER_FORMAT = re.compile(r"^0?\d{0,2}(\.\d{1,2})?[dfeEgG%]?$")
# Layers that pass their input's activation through (the output's activation is before them).
PASS_THROUGH = (
    "Dropout",
    "ActivityRegularization",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
)


def name_problems(raw: dict, locate) -> list[Problem]:
    """Unknown Keras names and arguments in raw config data; `locate(path, message)` makes
    each a Problem at its line (see `dlcli.config.load.locator`)."""
    return [locate(path, message) for path, message in keras_names.name_problems(raw)]


def config_problems(config) -> list[Problem]:
    """The callbacks' names, arguments and file names, the runtime settings, and MLflow's
    client where `output.mlflow` asks for it."""
    problems = []
    for index, spec in enumerate(config.training.callbacks):
        for key in PATH_ARGUMENTS:
            if key in spec.kwargs and (message := path_problem(key, spec.kwargs[key])):
                problems.append(config.problem(("training", "callbacks", index, key), message))
    problems += [
        config.problem(path, message) for path, message in runtime_problems(config.runtime)
    ]
    if config.output.mlflow is not False and importlib.util.find_spec("mlflow") is None:
        problems.append(
            config.problem(
                ("output", "mlflow"),
                "needs MLflow's client, which is not installed: pip install 'dlcli[mlflow]' "
                "(or set output.mlflow: false)",
            )
        )
    return problems


def callback_problems(config) -> list[Problem]:
    """Callbacks Keras does not know or refuses to build (a ModelCheckpoint file name without
    `.keras`), found by building each one with its file names under a folder that is never
    created: nothing is written, and `validate` finds what `train` would. Call it once
    `dlcli.runtime.keras_import.import_keras` has started the configured backend."""
    problems = []
    for index, spec in enumerate(config.training.callbacks):
        kwargs = dict(spec.kwargs)
        if any(key in kwargs and path_problem(key, kwargs[key]) for key in PATH_ARGUMENTS):
            continue  # reported by config_problems
        for key in PATH_ARGUMENTS:
            if key in kwargs:
                kwargs[key] = str(Path(UNWRITTEN) / kwargs[key])
        try:
            keras_names.construct("callback", spec.type, kwargs)
        except keras_names.NameProblem as exc:
            where = ("training", "callbacks", index, *([exc.key] if exc.key else []))
            problems.append(config.problem(where, str(exc).replace(f"{UNWRITTEN}/", "")))
    return problems


def stays_inside(value: str) -> bool:
    """A relative path that cannot climb out of the folder it is joined to."""
    path = Path(value)
    return not path.is_absolute() and ".." not in path.parts


class _SampleLogs(dict):
    """What Keras formats a callback's file name with: epoch, batch and every metric."""

    def __missing__(self, key):
        return 0.5


def path_problem(key: str, value) -> str | None:
    """What is wrong with a callback's file name (`filepath`, `filename`, ...), or None.

    It must be text naming a place inside the run folder, both as written and once Keras
    fills its fields in (`model-{epoch:02d}.keras`); only plain fields are allowed, so what
    a field renders to is known: a name and an optional number format.
    """
    fix = "give a name inside the run folder, such as 'log.csv' or 'model-{epoch:02d}.keras'"
    if not isinstance(value, str):
        return f"{key} must be a file name in quotes, not {'null' if value is None else type(value).__name__}; {fix}"
    if "\0" in value:
        return f"{key} {value!r} holds a NUL character; {fix}"
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(value)
            if name is not None
        ]
    except ValueError as exc:
        return f"{key} {value!r} has a broken {{field}} ({exc}); write braces as {{{{ and }}}}, or {fix}"
    for name, spec, conversion in fields:
        if not name.isidentifier() or conversion is not None or not NUMBER_FORMAT.match(spec or ""):
            shown = (
                "{"
                + name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            return (
                f"{key} {value!r}: the field {shown} is not allowed; use a plain name with an optional "
                "number format, such as {epoch:02d} or {val_loss:.4f}"
            )
    try:
        rendered = value.format_map(_SampleLogs(epoch=1, batch=1))
    except (ValueError, TypeError) as exc:
        return f"{key} {value!r} cannot be filled in ({exc}); use formats such as {{epoch:02d}} or {{val_loss:.4f}}"
    becomes = f" (it becomes {rendered!r})" if rendered != value else ""
    if not stays_inside(value) or not stays_inside(rendered):
        return f"{key} {value!r} leaves the run folder{becomes}; {fix}"
    if not Path(rendered).parts:
        return f"{key} {value!r} names no file{becomes}; {fix}"
    return None


def monitor_problems(config, metric_names: list[str], validation: bool) -> list[Problem]:
    """Early stopping, reduce-LR and `training.callbacks` that monitor a name the run will
    not log: `loss`, each compiled metric's logged name (`dlcli.runtime.keras_names.logged_name`),
    `learning_rate`, and with validation data the same with `val_`."""
    logged = ["loss", *metric_names]
    names = [*logged, *([f"val_{n}" for n in logged] if validation else []), "learning_rate"]
    out = []
    for path, monitor in _monitors(config):
        if monitor not in names:
            hint = did_you_mean(monitor, names)
            out.append(
                config.problem(
                    path,
                    f"monitors '{monitor}', which training does not log{hint}; "
                    f"monitor one of: {', '.join(names)}",
                )
            )
    return out


def _monitors(config) -> list[tuple[tuple, str]]:
    """(config path, name) of every `monitor:` the config sets or defaults."""
    found = []
    for key in ("early_stopping", "reduce_lr_on_plateau"):
        section = getattr(config.training, key)
        if section is not None:
            found.append((("training", key, "monitor"), section.monitor))
    for index, spec in enumerate(config.training.callbacks):
        if isinstance(spec.kwargs.get("monitor"), str):
            found.append((("training", "callbacks", index, "monitor"), spec.kwargs["monitor"]))
    return found


def output_activation(layers: list) -> str | None:
    """The activation the stack ends with ('softmax', 'sigmoid', 'linear' for none, ...),
    or None when its last layer does not say."""
    for layer in reversed(layers):
        name = type(layer).__name__
        if name == "Softmax":
            return "softmax"
        activation = getattr(layer, "activation", None)
        if activation is not None:
            return getattr(activation, "__name__", str(activation))
        if name not in PASS_THROUGH:
            return None
    return None


def ends_in_logits(layer_specs: list) -> bool:
    """Whether a config's stack ends with a Dense layer without an activation (so its
    outputs are logits), looking past dropout-like layers: what the default loss is told."""
    for spec in reversed(layer_specs):
        if spec.type.lower() in {name.lower() for name in PASS_THROUGH}:
            continue
        return spec.type.lower() == "dense" and spec.kwargs.get("activation") in (None, "linear")
    return False


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
            out.append(
                config.problem(
                    last,
                    f"the model ends with {units} units but the regression target has {want}; set units: {want}",
                )
            )
        if activation == "softmax":
            out.append(
                config.problem(
                    last, "a softmax output cannot regress a number; drop the activation"
                )
            )
        return out
    k = data.n_classes
    if name in INDICES and data.one_hot:
        out.append(
            config.problem(
                loss_path,
                "sparse_categorical_crossentropy takes class indices, but the labels are one-hot; use categorical_crossentropy",
            )
        )
    if name in BINARY:
        if units != 1 and activation == "softmax":
            out.append(
                config.problem(
                    loss_path,
                    f"binary cross-entropy on a {units}-unit softmax; use sparse_categorical_crossentropy, or end with Dense(1, sigmoid)",
                )
            )
        elif k > 2 and not data.one_hot:
            out.append(
                config.problem(
                    loss_path, f"binary loss for {k} classes; use sparse_categorical_crossentropy"
                )
            )
        elif units not in (1, k):
            out.append(
                config.problem(last, f"the model ends with {units} units; a binary loss wants 1")
            )
    elif units != k:
        out.append(
            config.problem(
                last,
                f"the model ends with {units} units but the data has {k} classes; set units: {k}",
            )
        )
    if from_logits and activation in ("softmax", "sigmoid"):
        out.append(
            config.problem(
                loss_path,
                f"from_logits: true, but the last layer already applies {activation}; drop the activation or set from_logits: false",
            )
        )
    if not from_logits and activation == "linear" and "Crossentropy" in name:
        squash = "sigmoid" if name in BINARY else "softmax"
        out.append(
            config.problem(
                loss_path,
                f"the last layer has no activation, so it outputs logits, but {name} is "
                f"told they are probabilities; set from_logits: true on the loss, or activation: "
                f"{squash} on the last layer",
            )
        )
    return out
