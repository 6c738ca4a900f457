"""The runtime a run gets: `auto` settings made concrete for its devices (`Choices`, which
run.json records under `runtime`), the settings a backend cannot honour, and applying them
(seeds, precision, determinism, the distribution).

Example:
    >>> choices = choose_runtime(config.runtime, list_devices("jax"), steps_per_epoch=36)
    >>> choices.precision, choices.distribution, choices.steps_per_execution
    ('float32', 'none', 36)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, replace

from dlcli.errors import ConfigError, Problem
from dlcli.runtime import compat
from dlcli.runtime.devices import MIN_CAPABILITY_BFLOAT16, MIN_CAPABILITY_FLOAT16, compute_devices


@dataclass(frozen=True)
class Choices:
    """The concrete runtime of a run: what `choose_runtime` made of `runtime:` for these
    devices. run.json keeps it (`record()`) under `runtime`, and the devices beside it."""

    backend: str
    precision: str  # float32 | mixed_float16 | mixed_bfloat16
    jit_compile: bool | str  # `auto` until the model is compiled (`compiled`)
    steps_per_execution: int
    distribution: str  # none | mirrored | data_parallel
    replicas: int  # devices each batch is spread over
    processes: int
    deterministic: bool
    devices: list[dict]
    backend_requested: str = ""  # what the config asked for (`auto` stays `auto`)
    backend_reason: str = ""  # why `backend` is the one

    def compiled(self, model) -> Choices:
        """The choices with XLA as Keras settled it when it compiled `model` (`auto` resolved)."""
        return replace(self, jit_compile=bool(getattr(model, "jit_compile", False)))

    def on_one_process(self) -> Choices:
        """The same choices for a model that runs in this process alone (no distribution)."""
        return replace(self, distribution="none")

    def record(self) -> dict:
        """run.json's `runtime`: every choice but the devices (recorded beside it)."""
        return {k: v for k, v in asdict(self).items() if k != "devices"}

    @property
    def device_kind(self) -> str:
        """The kind of device the run computes on: GPU where there are any, else CPU."""
        return "GPU" if any(d["type"] == "GPU" for d in self.devices) else "CPU"


STEPS_PER_EXECUTION_CAP = 64


def runtime_problems(runtime) -> list[tuple[tuple, str]]:
    """Settings the chosen backend cannot honour, as [(config path, message)]: found before
    any backend is imported, so `validate` reports them even where it is not installed."""
    found = []
    backend, distribution = runtime.backend, runtime.distribution
    if distribution == "mirrored" and backend != "tensorflow":
        found.append(
            (
                ("runtime", "distribution"),
                f"'mirrored' is TensorFlow's MirroredStrategy; on {backend} use distribution: "
                + ("data_parallel" if backend == "jax" else "none"),
            )
        )
    if distribution == "data_parallel" and backend != "jax":
        found.append(
            (
                ("runtime", "distribution"),
                f"'data_parallel' (keras.distribution) runs on runtime.backend: jax; on {backend} use "
                + ("mirrored" if backend == "tensorflow" else "none"),
            )
        )
    steps = runtime.steps_per_execution
    if backend == "torch" and steps not in ("auto", 1):
        found.append(
            (
                ("runtime", "steps_per_execution"),
                f"Keras's torch backend runs one step per execution, got {steps}; set 1 or auto",
            )
        )
    return found


def choose_runtime(
    runtime,
    devices: list[dict],
    steps_per_epoch: int,
    processes: int = 1,
    requested: str | None = None,
    reason: str = "",
) -> Choices:
    """Concrete settings for `runtime:`; 'auto' picks what is fast on these devices (those of
    every process, in a run of several `processes`). `requested` and `reason`: the backend
    the config asked for (`auto`) and why `runtime.backend` is the one chosen.

    Call `runtime_problems` first: a setting the backend cannot honour is an error there.
    """
    gpus = [d for d in devices if d["type"] == "GPU"]
    precision = runtime.precision
    if precision == "auto":
        capability = min(
            (tuple(g.get("compute_capability") or (0, 0)) for g in gpus), default=(0, 0)
        )
        precision = (
            "mixed_bfloat16"
            if gpus and capability >= MIN_CAPABILITY_BFLOAT16
            else "mixed_float16"
            if gpus and capability >= MIN_CAPABILITY_FLOAT16
            else "float32"
        )
    distribution = runtime.distribution
    replicas = compute_devices(devices)
    if distribution == "auto":
        several = len(replicas) >= 2  # several GPUs, or a CPU split by DLCLI_CPU_DEVICES
        distribution = (
            {"tensorflow": "mirrored", "jax": "data_parallel"}.get(runtime.backend, "none")
            if several
            else "none"
        )
    if processes > 1 and distribution != "data_parallel":
        raise ConfigError(
            Problem(
                f"{processes} processes share the training through distribution: data_parallel (or auto), "
                f"got {distribution}",
                where="runtime.distribution",
            )
        )
    steps = runtime.steps_per_execution
    if distribution == "mirrored" and steps not in ("auto", 1):
        raise ConfigError(
            Problem(
                f"steps_per_execution {steps} with distribution 'mirrored' fails in Keras 3 "
                "(keras-team/keras#19246: 'You must feed a value for placeholder tensor'); set 1 or auto",
                where="runtime.steps_per_execution",
            )
        )
    if steps == "auto":
        # Running several steps per call to the compiled function removes most per-step
        # Python overhead; callbacks then see progress every few steps, not every step.
        # Keras's torch backend takes only one, and so does MirroredStrategy (keras#19246).
        one = runtime.backend == "torch" or distribution == "mirrored"
        steps = 1 if one else max(1, min(steps_per_epoch, STEPS_PER_EXECUTION_CAP))
    return Choices(
        backend=runtime.backend,
        precision=precision,
        jit_compile=runtime.jit_compile,
        steps_per_execution=steps,
        distribution=distribution,
        replicas=len(replicas) if distribution != "none" else 1,
        processes=processes,
        deterministic=runtime.deterministic,
        devices=devices,
        backend_requested=requested or runtime.backend,
        backend_reason=reason,
    )


def apply_runtime(keras, choices: Choices, seed: int):
    """Set seeds, precision and determinism; return the scope to build the model in."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(choices.precision)
    if choices.deterministic:
        make_deterministic(choices.backend)
    devices = compute_devices(choices.devices)
    if choices.distribution == "mirrored":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=[d["id"] for d in devices]).scope()
    if choices.distribution == "data_parallel":
        compat.allow_uneven_batches()
        kind = "gpu" if devices and devices[0]["type"] == "GPU" else "cpu"
        distribution = keras.distribution.DataParallel(
            devices=keras.distribution.list_devices(kind)
        )
        # Several processes: each feeds its own share of every batch (dlcli.training.distributed),
        # which Keras puts together into the global batch.
        distribution.auto_shard_dataset = choices.processes == 1
        keras.distribution.set_distribution(distribution)
    return contextlib.nullcontext()


def make_deterministic(backend: str) -> None:
    """Same seed, same numbers: each backend's switch for deterministic ops (JAX's XLA
    flag is set by `import_keras`, since XLA reads it once at start)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    elif "--xla_gpu_deterministic_ops=true" not in os.environ.get("XLA_FLAGS", ""):
        import jax

        if any(
            device.platform != "cpu" for device in jax.devices()
        ):  # XLA's CPU ops are deterministic
            raise ConfigError(
                Problem(
                    "runtime.deterministic on JAX must be set before JAX starts; run it in a process of its own"
                )
            )


__all__ = ["Choices", "apply_runtime", "choose_runtime", "make_deterministic", "runtime_problems"]
