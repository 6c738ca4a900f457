"""Starting Keras: the one place Keras is first imported, on the backend a run chose.

`import_keras` sets `KERAS_BACKEND` (Keras reads it once, at import), the switches a backend
reads only when it starts (the CPU split into `DLCLI_CPU_DEVICES` logical devices, the
determinism flags), and keeps TensorFlow's C++ start-up chatter off the user's terminal
(`quiet_stderr`). Other modules reach Keras through `keras_module()` inside the functions
that need it, so importing dlcli never imports Keras.

Example:
    >>> keras = import_keras("jax")
    >>> keras_module() is keras
    True
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from dlcli.errors import ConfigError, Problem
from dlcli.runtime import compat, compile_cache
from dlcli.runtime.backend import auto_backend

CPU_DEVICES = (
    "DLCLI_CPU_DEVICES"  # split the CPU into N logical devices (several devices on one CPU)
)


def cpu_devices() -> int:
    """$DLCLI_CPU_DEVICES: how many logical devices the CPU is split into (1: not split)."""
    text = os.environ.get(CPU_DEVICES, "").strip()
    if not text:
        return 1
    try:
        count = int(text)
        if not 1 <= count <= 256:
            raise ValueError
    except ValueError:
        raise ConfigError(
            Problem(f"must be a whole number from 1 to 256, got {text!r}", where=CPU_DEVICES)
        ) from None
    return count


# The user's stderr while `quiet_stderr` points fd 2 elsewhere (for a message that must
# get out from a signal handler).
REAL_STDERR: list[int] = []


@contextlib.contextmanager
def quiet_stderr():
    """Silence fd 2 (C++ logs) while it runs; replay what was said if it fails."""
    if os.environ.get("DLCLI_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        REAL_STDERR.append(saved)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            REAL_STDERR.remove(saved)
            os.dup2(saved, 2)
            os.close(saved)


def import_keras(backend: str = "tensorflow", where: str = "", deterministic: bool = False):
    """Import Keras on `backend`; a ConfigError if Keras is already up on another one.

    Args:
        backend: tensorflow, jax or torch.
        where: the config place to name in an error (`cfg.yaml:30`).
        deterministic: set the switches a backend reads only at start (XLA's flag for
            deterministic GPU ops on JAX, cuBLAS's workspace on torch).
    """
    split = cpu_devices()  # checked on every call: a bad value is a usage error
    loaded = sys.modules.get("keras")
    if loaded is not None:
        current = loaded.backend.backend()
        if current != backend:
            raise ConfigError(
                Problem(
                    f"Keras is already running on the '{current}' backend in this process; "
                    f"run a separate process for runtime.backend: {backend}",
                    where=where,
                )
            )
        return loaded
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":  # on a GPU, take memory as needed rather than 75 % of the card at start
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if split > 1 and backend == "jax":  # XLA reads it once, when JAX starts
        flag = f"--xla_force_host_platform_device_count={split}"
        os.environ["XLA_FLAGS"] = " ".join(
            [
                f
                for f in os.environ.get("XLA_FLAGS", "").split()
                if not f.startswith("--xla_force_host_platform")
            ]
            + [flag]
        )
    # TensorFlow's C++ logs (even its "E" lines) are noise for a user; real failures
    # surface as Python exceptions. `--debug` keeps them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if os.environ.get("DLCLI_DEBUG") else "3")
    if deterministic:
        for name, value in DETERMINISM_ENV.get(backend, {}).items():
            if value not in os.environ.get(name, ""):
                os.environ[name] = (
                    f"{os.environ.get(name, '')} {value}".strip() if name == "XLA_FLAGS" else value
                )
    try:
        with quiet_stderr():
            import keras

            if backend == "tensorflow":  # the first device probe logs CUDA errors on CPU hosts
                import tensorflow as tf

                cpus = tf.config.list_physical_devices("CPU")
                if split > 1 and cpus:  # before TensorFlow's runtime starts
                    with contextlib.suppress(RuntimeError):  # started already: keep what it has
                        tf.config.set_logical_device_configuration(
                            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(split)]
                        )
            else:
                compat.keep_tensorflow_out()
                if backend == "jax":
                    compile_cache.start()
    except ImportError as exc:
        extra = (
            "pip install -e '.[torch]'"
            if backend == "torch"
            else "pip install -e . (dlcli installs it)"
        )
        raise ConfigError(
            Problem(
                f"runtime.backend '{backend}' is not installed ({exc}); install it: {extra}",
                where=where,
            )
        ) from None
    warning = compile_cache.take_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return keras


# Environment switches for `deterministic: true` that a backend reads only when it starts.
DETERMINISM_ENV = {
    "jax": {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"},
    "torch": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
}


def let_tensorflow_in() -> None:
    """Import TensorFlow for a layer that needs it on any backend (`TextVectorization`),
    undoing `keep_tensorflow_out`.

    Private: `keras.src.utils.module_utils.tensorflow._available`."""
    from keras.src.utils import module_utils

    if "tensorflow" not in sys.modules:
        with quiet_stderr():  # TensorFlow's start-up lines about CPUs and CUDA
            import keras
            import tensorflow as tf  # the string ops Keras's text layer runs on

            if keras.backend.backend() != "tensorflow":
                # Strings only: the backend that trains keeps the accelerators to itself.
                tf.config.set_visible_devices([], "GPU")
            tf.config.list_logical_devices()  # the device probe, which logs on CPU hosts

    lazy = getattr(module_utils, "tensorflow", None)
    if hasattr(lazy, "_available"):
        lazy._available = None  # asked again: TensorFlow is loaded, so it is there


def keras_module():
    """Keras as `import_keras` set it up (or on the backend `auto` picks, if nothing has)."""
    loaded = sys.modules.get("keras")
    if loaded is not None:
        return loaded
    return import_keras(auto_backend())


__all__ = [
    "CPU_DEVICES",
    "REAL_STDERR",
    "cpu_devices",
    "import_keras",
    "keras_module",
    "quiet_stderr",
]
