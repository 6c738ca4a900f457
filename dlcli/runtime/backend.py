"""`runtime.backend: auto`: which installed Keras backend trains a model fastest here.

The rule (`AUTO_RULE`) was measured (`benchmarks/bench_backends.py`, figures in
benchmarks/README.md): convolutions on TensorFlow, everything else on JAX. Nothing here
imports a backend: `installed_backends` asks the import system what is there.

Example:
    >>> choose_backend(config.runtime, ["Conv2D", "Dense"])
    ('tensorflow', 'a convolutional model: TensorFlow trains convolutions fastest here ...')
"""

from __future__ import annotations

import importlib.util
import os
import types

from dlcli.errors import ConfigError, Problem

BACKENDS = ("tensorflow", "jax", "torch")


def installed_backends() -> list[str]:
    """The Keras backends importable here, in BACKENDS order (nothing is imported)."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def choose_backend(runtime, layer_types=(), processes: int = 1) -> tuple[str, str]:
    """(backend, why) for `runtime.backend`; 'auto' picks among those installed by the rule
    measured by benchmarks/bench_backends.py (figures in benchmarks/README.md): nothing is imported."""
    if runtime.backend != "auto":
        return runtime.backend, "set in the config"
    chosen = os.environ.get("KERAS_BACKEND", "").strip()
    if chosen:
        if chosen not in BACKENDS:
            raise ConfigError(
                Problem(
                    f"dlcli runs on {', '.join(BACKENDS)}, got '{chosen}'", where="KERAS_BACKEND"
                )
            )
        return chosen, "KERAS_BACKEND is set"
    installed = installed_backends()
    if not installed:
        raise ConfigError(
            Problem(
                "no Keras backend is installed; install one: pip install -e .",
                where="runtime.backend",
            )
        )
    if runtime.distribution == "mirrored":
        return _needs(
            "tensorflow", installed, "distribution: mirrored is TensorFlow's MirroredStrategy"
        )
    if processes > 1 or runtime.distribution == "data_parallel":
        return _needs(
            "jax", installed, "several processes and distribution: data_parallel train on JAX"
        )
    for backend, families, why in AUTO_RULE:
        if backend in installed and (families is None or families & _families(layer_types)):
            return backend, why
    return installed[0], "the only backend installed"


def backend_for(requested: str = "auto", layer_types=()) -> tuple[str, str]:
    """`choose_backend` for work on one device with no config's runtime to ask: evaluate,
    predict, `dlcli env`, name look-ups."""
    return choose_backend(
        types.SimpleNamespace(backend=requested, distribution="none"), layer_types
    )


def auto_backend(layer_types=()) -> str:
    """The backend `runtime.backend: auto` picks for a model with these layers, or
    tensorflow when it cannot tell (the error then shows when a backend is imported)."""
    try:
        return backend_for("auto", layer_types)[0]
    except ConfigError:
        return "tensorflow"


def _needs(backend: str, installed: list[str], why: str) -> tuple[str, str]:
    if backend not in installed:
        raise ConfigError(
            Problem(
                f"{why}, and {backend} is not installed; install it or set runtime.backend",
                where="runtime.backend",
            )
        )
    return backend, why


def _families(layer_types) -> set[str]:
    """The model families (AUTO_RULE's keys) of a list of Keras layer class names."""
    found = set()
    for name in layer_types:
        lowered = str(name).lower()
        for family, marks in LAYER_FAMILIES.items():
            if any(mark in lowered for mark in marks):
                found.add(family)
    return found


# Layer class names (lower case) by the family whose speed differs between backends:
# Conv1D/2D/3D, their Transpose, Separable and Depthwise forms, ConvLSTM.
LAYER_FAMILIES = {
    "conv": ("conv",),
}


# `runtime.backend: auto`, first match wins: (backend, families or None for any model, why).
# The evidence: benchmarks/bench_backends.py, figures in benchmarks/README.md.
# On 2 CPU cores, JAX trained dense, table and recurrent models 1.6-8.8x faster per epoch
# than TensorFlow and started faster (no TensorFlow import); convolutions ran 4.4x slower
# under XLA than under TensorFlow's oneDNN kernels; torch was slowest on all of them.
AUTO_RULE = [
    (
        "tensorflow",
        {"conv"},
        (
            "a convolutional model: TensorFlow trains convolutions fastest here "
            "(4.4x JAX per epoch on CPU; benchmarks/README.md, bench_backends.py)"
        ),
    ),
    (
        "jax",
        None,
        (
            "JAX trains dense, table and recurrent models fastest here "
            "(1.6-8.8x TensorFlow per epoch on CPU, and starts faster; benchmarks/README.md, bench_backends.py)"
        ),
    ),
    ("tensorflow", None, "JAX is not installed; TensorFlow is the next fastest"),
]


__all__ = [
    "AUTO_RULE",
    "BACKENDS",
    "auto_backend",
    "backend_for",
    "choose_backend",
    "installed_backends",
]
