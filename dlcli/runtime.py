"""Runtime: which Keras backend, which devices, and the fast settings chosen for them.

`import_keras` is the one place dlcli imports Keras: it sets `KERAS_BACKEND` from the config
first (Keras reads it once, at import) and keeps the C++ start-up chatter of TensorFlow off
the user's terminal. `choose_runtime` turns `runtime: auto` settings into concrete choices
(precision, XLA, steps per execution, distribution), which run.json records.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from dlcli.errors import ConfigError, Problem

# Mixed precision pays off from Volta (7.0) on; bfloat16 from Ampere (8.0) on.
MIN_CAPABILITY_FLOAT16 = (7, 0)
MIN_CAPABILITY_BFLOAT16 = (8, 0)
STEPS_PER_EXECUTION_CAP = 64


@contextlib.contextmanager
def _quiet_stderr():
    """Silence fd 2 (C++ logs) while it runs; replay what was said if it fails."""
    if os.environ.get("DLCLI_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_keras(backend: str = "tensorflow", where: str = ""):
    """Import Keras on `backend`; a ConfigError if Keras is already up on another one."""
    loaded = sys.modules.get("keras")
    if loaded is not None:
        current = loaded.backend.backend()
        if current != backend:
            raise ConfigError(Problem(
                f"Keras is already running on the '{current}' backend in this process; "
                f"run a separate process for runtime.backend: {backend}",
                where=where,
            ))
        return loaded
    os.environ["KERAS_BACKEND"] = backend
    # TensorFlow's C++ logs (even its "E" lines) are noise for a user; real failures
    # surface as Python exceptions. `--debug` keeps them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if os.environ.get("DLCLI_DEBUG") else "3")
    try:
        with _quiet_stderr():
            import keras

            if backend == "tensorflow":  # the first device probe logs CUDA errors on CPU hosts
                import tensorflow as tf

                tf.config.list_physical_devices()
    except ImportError as exc:
        extra = {"jax": "pip install -e '.[jax]'", "torch": "pip install -e '.[torch]'"}.get(backend, "pip install -e .")
        raise ConfigError(Problem(
            f"runtime.backend '{backend}' is not installed ({exc}); install it: {extra}", where=where
        )) from None
    return keras


def versions(backend: str) -> dict:
    """dlcli, Keras, backend and Python versions, as run.json and `dlcli env` report them."""
    import importlib.metadata as md
    import platform

    import keras

    from dlcli import __version__

    try:
        backend_version = md.version(backend)  # the backends' package names are their names
    except md.PackageNotFoundError:
        backend_version = None
    return {
        "dlcli": __version__, "keras": keras.__version__, "backend": backend,
        "backend_version": backend_version, "python": platform.python_version(),
    }


def list_devices(backend: str) -> list[dict]:
    """Devices the backend sees: [{'type': 'CPU'|'GPU', 'name': ..., 'memory_gb': ...}]."""
    with _quiet_stderr():  # probing for CUDA logs errors on machines without it
        return _list_devices(backend)


def _list_devices(backend: str) -> list[dict]:
    devices = []
    if backend == "tensorflow":
        import tensorflow as tf

        for dev in tf.config.list_physical_devices():
            if dev.device_type not in ("CPU", "GPU"):
                continue
            entry = {"type": dev.device_type, "name": dev.name}
            if dev.device_type == "GPU":
                details = tf.config.experimental.get_device_details(dev)
                entry["name"] = details.get("device_name", dev.name)
                entry["compute_capability"] = list(details.get("compute_capability") or ())
            devices.append(entry)
    elif backend == "jax":
        import jax

        for dev in jax.devices():
            kind = "GPU" if dev.platform in ("gpu", "cuda", "rocm") else dev.platform.upper()
            entry = {"type": kind, "name": getattr(dev, "device_kind", str(dev))}
            capability = getattr(dev, "compute_capability", None)
            if capability:
                entry["compute_capability"] = [int(p) for p in str(capability).split(".")]
            stats = dev.memory_stats() if kind == "GPU" and hasattr(dev, "memory_stats") else None
            if stats and "bytes_limit" in stats:
                entry["memory_gb"] = round(stats["bytes_limit"] / 2**30, 1)
            devices.append(entry)
    else:
        import torch

        devices.append({"type": "CPU", "name": "cpu"})
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append({
                "type": "GPU", "name": props.name, "compute_capability": [props.major, props.minor],
                "memory_gb": round(props.total_memory / 2**30, 1),
            })
    return devices


def enable_memory_growth(backend: str) -> None:
    """On GPUs, TensorFlow takes memory as it needs it, not all at once."""
    if backend != "tensorflow":
        return
    import tensorflow as tf

    with _quiet_stderr():
        gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):  # already initialised: nothing to change
            tf.config.experimental.set_memory_growth(gpu, True)


def choose_runtime(runtime, devices: list[dict], steps_per_epoch: int) -> dict:
    """Concrete settings for `runtime:`; 'auto' picks what is fast on these devices."""
    gpus = [d for d in devices if d["type"] == "GPU"]
    precision = runtime.precision
    if precision == "auto":
        capability = min((tuple(g.get("compute_capability") or (0, 0)) for g in gpus), default=(0, 0))
        precision = (
            "mixed_bfloat16" if gpus and capability >= MIN_CAPABILITY_BFLOAT16
            else "mixed_float16" if gpus and capability >= MIN_CAPABILITY_FLOAT16
            else "float32"
        )
    distribution = runtime.distribution
    if distribution == "auto":
        distribution = "none" if len(gpus) < 2 else ("mirrored" if runtime.backend == "tensorflow" else "data_parallel")
    if distribution == "mirrored" and runtime.backend != "tensorflow":
        raise ConfigError("runtime.distribution 'mirrored' needs runtime.backend: tensorflow; use data_parallel")
    if distribution == "data_parallel" and runtime.backend == "tensorflow":
        raise ConfigError("runtime.distribution 'data_parallel' needs runtime.backend: jax; use mirrored on tensorflow")
    steps = runtime.steps_per_execution
    if steps == "auto":
        # Running several steps per call to the compiled function removes most per-step
        # Python overhead; callbacks then see progress every few steps, not every step.
        steps = max(1, min(steps_per_epoch, STEPS_PER_EXECUTION_CAP))
    return {
        "backend": runtime.backend,
        "precision": precision,
        "jit_compile": runtime.jit_compile,
        "steps_per_execution": steps,
        "distribution": distribution,
        "deterministic": runtime.deterministic,
        "devices": devices,
    }


def apply_runtime(keras, choices: dict, seed: int):
    """Set seeds, precision and determinism; return the scope to build the model in."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(choices["precision"])
    if choices["deterministic"] and choices["backend"] == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if choices["distribution"] == "mirrored":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    if choices["distribution"] == "data_parallel":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return contextlib.nullcontext()
