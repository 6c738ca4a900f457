"""Config names -> Keras objects, through Keras's own modules and registries.

`type: Dense`, `optimizer: adam`, `loss: sparse_categorical_crossentropy` and
`metrics: [AUC]` are looked up case-insensitively (and with or without underscores) in
`keras.layers`, `keras.optimizers`, `keras.losses`, `keras.metrics` and
`keras.callbacks`; keyword arguments are checked against the class's constructor and
then handed to Keras, which checks their values. Nothing here mirrors Keras's lists. A
misspelt name gets a did-you-mean in the spelling the user chose: `sparse_categorical_crossentrpy`
suggests `sparse_categorical_crossentropy`, `Desne` suggests `Dense`, `adamw2` suggests `adamw`.
Anything that would run code named in a config (`Lambda`, `LambdaCallback`, a
`TFSMLayer`, a `RemoteMonitor`) is refused.

Example:
    >>> construct("layer", "dense", {"units": 3})
    <Dense name=dense, built=False>
"""

from __future__ import annotations

import functools
import inspect
import math

from dlcli.errors import closest, did_you_mean, first_line
from dlcli.runtime import compat
from dlcli.runtime.keras_import import keras_module

REFUSED = {
    "lambda": "runs Python code from the config; use a built-in layer",
    "tfsmlayer": "loads and runs a SavedModel's code",
    "inputlayer": "dlcli adds the input from the data; set model.input_shape to change it",
    "lambdacallback": "runs Python code from the config",
    "remotemonitor": "sends training data over the network",
    "backupandrestore": "dlcli checkpoints every run itself; use `dlcli train --resume RUN`",
    "progbarlogger": "dlcli prints progress itself",
}
# A layer's arguments that take a Keras object of their own, by the end of their name
# (`kernel_regularizer: {type: L2, l2: 0.01}`, `bias_initializer: {type: Constant, value: 0.1}`).
NESTED = ("regularizer", "initializer", "constraint")
# Compile-time names that Keras resolves by the loss (accuracy -> sparse_categorical_accuracy).
COMPILE_METRIC_ALIASES = {"accuracy", "acc", "crossentropy", "ce"}


class NameProblem(ValueError):
    """A config name or argument that Keras does not accept; the message says the fix.

    `key` is the argument at fault, when there is one, so the error points at its line.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _key(name: str) -> str:
    return str(name).lower().replace("_", "")


@functools.cache
def _classes(kind: str) -> dict[str, type]:
    """Normalised name -> class for every public class of one Keras module."""
    keras = keras_module()

    module, base = {
        "layer": (keras.layers, keras.layers.Layer),
        "optimizer": (keras.optimizers, keras.optimizers.Optimizer),
        "loss": (keras.losses, keras.losses.Loss),
        "metric": (keras.metrics, keras.metrics.Metric),
        "callback": (keras.callbacks, keras.callbacks.Callback),
        "regularizer": (keras.regularizers, keras.regularizers.Regularizer),
        "initializer": (keras.initializers, keras.initializers.Initializer),
        "constraint": (keras.constraints, keras.constraints.Constraint),
    }[kind]
    table = {}
    for name, obj in vars(module).items():
        if isinstance(obj, type) and issubclass(obj, base) and not name.startswith("_"):
            table.setdefault(_key(name), obj)
    if kind in ("loss", "metric"):
        # Function aliases (`mse`, `sparse_categorical_crossentropy`) name the same class.
        for name, obj in vars(module).items():
            if callable(obj) and not isinstance(obj, type) and not name.startswith("_"):
                cls = table.get(_key(getattr(obj, "__name__", name)))
                if cls is not None:
                    table.setdefault(_key(name), cls)
    table.pop(_key(base.__name__), None)
    return table


def _public_names(kind: str) -> list[str]:
    seen = {}
    for cls in _classes(kind).values():
        seen[cls.__name__] = True
    return sorted(seen)


def lookup(kind: str, name: str) -> type:
    """The Keras class a config name stands for; `NameProblem` with did-you-mean if none."""
    key = _key(name)
    if kind == "metric" and key in COMPILE_METRIC_ALIASES:
        return lookup(kind, "accuracy" if key.startswith("acc") else "crossentropy")
    if key in REFUSED:
        raise NameProblem(f"'{name}' is refused: it {REFUSED[key]}")
    table = _classes(kind)
    if key in table:
        return table[key]
    alias = _alias(kind, name)
    if alias is not None:
        return alias
    choices = _public_names(kind) + (sorted(COMPILE_METRIC_ALIASES) if kind == "metric" else [])
    hint = suggest(
        name,
        {k: cls.__name__ for k, cls in table.items() if k not in REFUSED}
        | {_key(a): a for a in (COMPILE_METRIC_ALIASES if kind == "metric" else ())},
    )
    if not hint:
        hint = f" (see keras.{kind}s: {', '.join(choices[:12])}, ...)".replace("losss", "losses")
    raise NameProblem(f"unknown {kind} '{name}'{hint}")


def suggest(word: str, names: dict[str, str]) -> str:
    """A did-you-mean for `word` among `names` (normalised key -> Keras's spelling), written
    the way the user writes: snake_case (`mean_squared_error`), lower case (`adamw`), or
    Keras's CamelCase (`Dense`).

    Example:
        >>> suggest("sparse_categorical_crossentrpy", {"sparsecategoricalcrossentropy": "SparseCategoricalCrossentropy"})
        " (did you mean 'sparse_categorical_crossentropy'?)"
    """
    found = closest(_key(word), names)
    return f" (did you mean '{in_style_of(word, names[found[0]])}'?)" if found else ""


def in_style_of(word: str, name: str) -> str:
    """`name` spelt in `word`'s style: snake_case, all lower case, or as Keras spells it."""
    if "_" in word:
        return compat.snake_case(name)  # Keras's own rule
    if word == word.lower():
        return name.lower()
    return name


def _alias(kind: str, name: str) -> type | None:
    """Keras's own short names (`mse`, `mae`, `kld`) resolve through its `get`."""
    if kind not in ("loss", "metric"):
        return None
    keras = keras_module()

    module = keras.losses if kind == "loss" else keras.metrics
    try:
        found = module.get(name)
    except Exception:  # noqa: BLE001 - an unknown name, whatever Keras raises for it
        return None
    target = (
        found
        if isinstance(found, type)
        else (
            type(found)
            if not callable(found) or hasattr(found, "get_config") and not inspect.isfunction(found)
            else None
        )
    )
    if target is None:
        target = _classes(kind).get(_key(getattr(found, "__name__", "")))
    return target


def accepted_arguments(cls: type) -> set[str] | None:
    """Keyword arguments a Keras class's constructor takes, following `**kwargs` to its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names - {"self"}
        if klass is keras_module().layers.Layer:  # Keras's base layer takes these too
            return (names | {"input_shape", "input_dim", "batch_size"}) - {"self"}
    return None  # takes anything


def check_arguments(cls: type, kwargs: dict) -> None:
    accepted = accepted_arguments(cls)
    if accepted is None:
        return
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        key = unknown[0]
        hint = (
            did_you_mean(key, sorted(accepted))
            or f" ({cls.__name__} takes: {', '.join(sorted(accepted))})"
        )
        raise NameProblem(f"unknown key '{key}' for {cls.__name__}{hint}", key=key)


def check(kind: str, name: str, kwargs: dict) -> type:
    """The class a name stands for, with its argument names (and activation) checked, and
    an optimizer's numbers (`learning_rate: -1` is refused here, not mid-fit)."""
    cls = lookup(kind, name)
    check_arguments(cls, kwargs)
    for key, (inner, spec) in _nested(kwargs).items():
        try:
            check(inner, spec["type"], _arguments(spec))
        except NameProblem as exc:
            raise NameProblem(f"{key}: {exc}", key=key) from None
    if kind == "optimizer":
        check_numbers(cls, kwargs)
    if "activation" in kwargs:
        try:
            check_activation(kwargs["activation"])
        except NameProblem as exc:
            raise NameProblem(str(exc), key="activation") from None
    return cls


@functools.cache
def float_arguments(cls: type) -> dict[str, float]:
    """Constructor arguments whose default is a float (an optimizer's `learning_rate`,
    `beta_1`, `epsilon`, ...) -> that default, through the whole class hierarchy."""
    found: dict[str, float] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if isinstance(param.default, float):
                found[param.name] = param.default
    return found


def check_numbers(cls: type, kwargs: dict) -> None:
    """Arguments that take a float get a finite number (an int is a number too; true/false
    and text are not), and a learning rate is above 0."""
    floats = float_arguments(cls)
    for key, value in kwargs.items():
        if key not in floats and key != "learning_rate":
            continue
        example = floats.get(key, 0.001)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NameProblem(f"{key} must be a number such as {example}, got {value!r}", key=key)
        if not _finite(value):
            raise NameProblem(
                f"{key} must be a finite number such as {example}, got {value}", key=key
            )
        if key == "learning_rate" and value <= 0:
            raise NameProblem(
                f"learning_rate must be above 0, such as {example}; got {value}", key=key
            )


def _finite(value: float) -> bool:
    """A float that is not nan/inf, or an int a float can hold (`10**400` is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _as_floats(cls: type, kwargs: dict) -> dict:
    """`learning_rate: 1` as Keras wants it (1.0): ints where the class takes a float."""
    floats = float_arguments(cls)
    return {
        k: float(v) if (k in floats or k == "learning_rate") and type(v) is int else v
        for k, v in kwargs.items()
    }


def construct(kind: str, name: str, kwargs: dict):
    """Look a class up, check its arguments, build it; Keras's complaint becomes a NameProblem."""
    cls = check(kind, name, kwargs)
    if kind == "optimizer":
        kwargs = _as_floats(cls, kwargs)
    for key, (inner, spec) in _nested(kwargs).items():
        try:
            kwargs = {**kwargs, key: construct(inner, spec["type"], _arguments(spec))}
        except NameProblem as exc:
            raise NameProblem(f"{key}: {exc}", key=key) from None
    try:
        return cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad argument value
        raise NameProblem(f"{cls.__name__}: {first_line(exc)}") from None


def _nested(kwargs: dict) -> dict[str, tuple[str, dict]]:
    """Arguments written as `{type: Name, ...}` that take a regularizer, an initializer or
    a constraint: argument -> (that kind, the spec). Keras's own forms (a name such as
    `l2` or `he_normal`, or `{class_name, config}`) are left for Keras to read."""
    found = {}
    for key, value in kwargs.items():
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            inner = next((k for k in NESTED if str(key).endswith(k)), None)
            if inner is not None:
                found[key] = (inner, value)
    return found


def _arguments(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "type"}


def check_activation(value) -> None:
    keras = keras_module()
    if value is None or not isinstance(value, str):
        return
    try:
        keras.activations.get(value)
    except Exception:  # noqa: BLE001 - Keras raises ValueError or TypeError by version
        names = [
            n
            for n in vars(keras.activations)
            if not n.startswith("_") and n not in ("get", "serialize", "deserialize")
        ]
        raise NameProblem(
            f"unknown activation '{value}'{suggest(value, {_key(n): n for n in names})}"
        ) from None


def name_problems(raw: dict) -> list[tuple[tuple, str]]:
    """Names and arguments in raw (not yet validated) config data: [(path, message)].

    Lets `validate` report Keras-level mistakes together with schema errors.
    """
    found = []

    def check_spec(kind, path, spec):
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            return
        try:
            check(kind, spec["type"], {k: v for k, v in spec.items() if k != "type"})
        except NameProblem as exc:
            found.append(((*path, exc.key) if exc.key else path, str(exc)))

    def section(name):
        value = raw.get(name) if isinstance(raw, dict) else None
        return value if isinstance(value, dict) else {}

    layers = section("model").get("layers")
    for i, spec in enumerate(layers if isinstance(layers, list) else []):
        check_spec("layer", ("model", "layers", i), spec)
    compile_ = section("compile")
    for kind in ("optimizer", "loss"):
        if kind in compile_:
            check_spec(kind, ("compile", kind), compile_[kind])
    metrics = compile_.get("metrics")
    for i, spec in enumerate(metrics if isinstance(metrics, list) else []):
        if not (isinstance(spec, str) and _key(spec) in COMPILE_METRIC_ALIASES):
            check_spec("metric", ("compile", "metrics", i), spec)
    callbacks = section("training").get("callbacks")
    for i, spec in enumerate(callbacks if isinstance(callbacks, list) else []):
        check_spec("callback", ("training", "callbacks", i), spec)
    return found


def make_optimizer(spec):
    return construct("optimizer", spec.type, spec.kwargs)


def make_loss(spec):
    return construct("loss", spec.type, spec.kwargs)


def make_metric(spec):
    """A metric for `compile`: a plain name stays a name so Keras picks the right variant."""
    if _key(spec.type) in COMPILE_METRIC_ALIASES and not spec.kwargs:
        return spec.type.lower()
    if not spec.kwargs:
        keras = keras_module()
        lookup("metric", spec.type)  # a clear error for an unknown name
        try:
            keras.metrics.get(spec.type)
            return spec.type  # Keras names it as in a hand-written script ('mae' stays 'mae')
        except Exception:  # noqa: BLE001, S110 - not a plain Keras name: build the class below
            pass
    return construct("metric", spec.type, spec.kwargs)


def logged_name(metric) -> str:
    """The name a compiled metric is logged under (`history`, callbacks' `monitor`): Keras 3
    logs a metric given by name under that very string ('acc', 'mae'), an object under its
    `.name` ('auc')."""
    return metric if isinstance(metric, str) else str(metric.name)
