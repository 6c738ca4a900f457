"""Runtime: which Keras backend, which devices, the settings chosen for them.

`import_keras` is where Keras is first imported: it sets `KERAS_BACKEND` from the config
(Keras reads it once, at import), the backends' determinism switches that must precede
their start, and keeps TensorFlow's C++ start-up chatter off the user's terminal. Other
modules reach Keras through `keras_module()` inside the functions that need it (and
`dlcli.training.callbacks`, which subclasses Keras's classes, is only imported after this), so
importing dlcli never imports Keras. `runtime_problems` finds the settings a backend cannot
honour before anything is imported; `choose_runtime` turns `auto` into concrete choices
(precision, XLA, steps per execution, distribution), which run.json records;
`apply_runtime` applies them (several processes: `dlcli.training.distributed`). `environment()` is
`dlcli env`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import types

from dlcli.errors import ConfigError, Problem
from dlcli.runtime import compile_cache

BACKENDS = ("tensorflow", "jax", "torch")

# Mixed precision pays off from Volta (7.0) on; bfloat16 from Ampere (8.0) on.
MIN_CAPABILITY_FLOAT16 = (7, 0)
MIN_CAPABILITY_BFLOAT16 = (8, 0)
STEPS_PER_EXECUTION_CAP = 64
CPU_DEVICES = "DLCLI_CPU_DEVICES"  # split the CPU into N logical devices (SPEC 6)


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
        raise ConfigError(Problem(f"must be a whole number from 1 to 256, got {text!r}", where=CPU_DEVICES)) from None
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
            raise ConfigError(Problem(
                f"Keras is already running on the '{current}' backend in this process; "
                f"run a separate process for runtime.backend: {backend}",
                where=where,
            ))
        return loaded
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":  # on a GPU, take memory as needed rather than 75 % of the card at start
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if split > 1 and backend == "jax":  # XLA reads it once, when JAX starts
        flag = f"--xla_force_host_platform_device_count={split}"
        os.environ["XLA_FLAGS"] = " ".join(
            [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform")] + [flag])
    # TensorFlow's C++ logs (even its "E" lines) are noise for a user; real failures
    # surface as Python exceptions. `--debug` keeps them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if os.environ.get("DLCLI_DEBUG") else "3")
    if deterministic:
        for name, value in DETERMINISM_ENV.get(backend, {}).items():
            if value not in os.environ.get(name, ""):
                os.environ[name] = f"{os.environ.get(name, '')} {value}".strip() if name == "XLA_FLAGS" else value
    try:
        with quiet_stderr():
            import keras

            if backend == "tensorflow":  # the first device probe logs CUDA errors on CPU hosts
                import tensorflow as tf

                cpus = tf.config.list_physical_devices("CPU")
                if split > 1 and cpus:  # before TensorFlow's runtime starts
                    with contextlib.suppress(RuntimeError):  # started already: keep what it has
                        tf.config.set_logical_device_configuration(
                            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(split)])
            else:
                _keep_tensorflow_out()
                if backend == "jax":
                    compile_cache.start()
    except ImportError as exc:
        extra = {"jax": "pip install -e '.[jax]'", "torch": "pip install -e '.[torch]'"}.get(backend, "pip install -e .")
        raise ConfigError(Problem(
            f"runtime.backend '{backend}' is not installed ({exc}); install it: {extra}", where=where
        )) from None
    warning = compile_cache.take_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return keras


# Environment switches for `deterministic: true` that a backend reads only when it starts.
DETERMINISM_ENV = {
    "jax": {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"},
    "torch": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
}


def keras_module():
    """Keras as `import_keras` set it up (or on the backend `auto` picks, if nothing has)."""
    loaded = sys.modules.get("keras")
    if loaded is not None:
        return loaded
    return import_keras(auto_backend())


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
    with quiet_stderr():  # probing for CUDA logs errors on machines without it
        return _list_devices(backend)


def _list_devices(backend: str) -> list[dict]:
    devices = []
    if backend == "tensorflow":
        import tensorflow as tf

        physical = {d.device_type: d for d in tf.config.list_physical_devices()}
        for dev in tf.config.list_logical_devices():  # DLCLI_CPU_DEVICES splits the CPU into several
            if dev.device_type not in ("CPU", "GPU"):
                continue
            entry = {"type": dev.device_type, "name": dev.name, "id": dev.name}
            if dev.device_type == "GPU" and "GPU" in physical:
                details = tf.config.experimental.get_device_details(physical["GPU"])
                entry["name"] = details.get("device_name", dev.name)
                entry["compute_capability"] = list(details.get("compute_capability") or ())
            devices.append(entry)
    elif backend == "jax":
        import jax

        for dev in jax.devices():
            kind = "GPU" if dev.platform in ("gpu", "cuda", "rocm") else dev.platform.upper()
            entry = {"type": kind, "name": getattr(dev, "device_kind", str(dev)), "id": f"{dev.platform}:{dev.id}",
                     "process": int(getattr(dev, "process_index", 0))}
            capability = getattr(dev, "compute_capability", None)
            if capability:
                entry["compute_capability"] = [int(p) for p in str(capability).split(".")]
            stats = dev.memory_stats() if kind == "GPU" and hasattr(dev, "memory_stats") else None
            if stats and "bytes_limit" in stats:
                entry["memory_gb"] = round(stats["bytes_limit"] / 2**30, 1)
            devices.append(entry)
    else:
        import torch

        devices.append({"type": "CPU", "name": "cpu", "id": "cpu"})
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append({
                "type": "GPU", "name": props.name, "id": f"cuda:{i}", "compute_capability": [props.major, props.minor],
                "memory_gb": round(props.total_memory / 2**30, 1),
            })
    return devices


def enable_memory_growth(backend: str) -> None:
    """On GPUs, TensorFlow takes memory as it needs it, not all at once."""
    if backend != "tensorflow":
        return
    import tensorflow as tf

    with quiet_stderr():
        gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):  # already initialised: nothing to change
            tf.config.experimental.set_memory_growth(gpu, True)


def installed_backends() -> list[str]:
    """The Keras backends importable here, in BACKENDS order (nothing is imported)."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def choose_backend(runtime, layer_types=(), processes: int = 1) -> tuple[str, str]:
    """(backend, why) for `runtime.backend`; 'auto' picks among those installed by the rule
    measured in benchmarks/README.md ("Which backend"): nothing is imported."""
    if runtime.backend != "auto":
        return runtime.backend, "set in the config"
    chosen = os.environ.get("KERAS_BACKEND", "").strip()
    if chosen:
        if chosen not in BACKENDS:
            raise ConfigError(Problem(f"dlcli runs on {', '.join(BACKENDS)}, got '{chosen}'", where="KERAS_BACKEND"))
        return chosen, "KERAS_BACKEND is set"
    installed = installed_backends()
    if not installed:
        raise ConfigError(Problem("no Keras backend is installed; install one: pip install -e .", where="runtime.backend"))
    if runtime.distribution == "mirrored":
        return _needs("tensorflow", installed, "distribution: mirrored is TensorFlow's MirroredStrategy")
    if processes > 1 or runtime.distribution == "data_parallel":
        return _needs("jax", installed, "several processes and distribution: data_parallel train on JAX")
    for backend, families, why in AUTO_RULE:
        if backend in installed and (families is None or families & _families(layer_types)):
            return backend, why
    return installed[0], "the only backend installed"


def backend_for(requested: str = "auto", layer_types=()) -> tuple[str, str]:
    """`choose_backend` for work on one device with no config's runtime to ask: evaluate,
    predict, `dlcli env`, name look-ups."""
    return choose_backend(types.SimpleNamespace(backend=requested, distribution="none"), layer_types)


def auto_backend(layer_types=()) -> str:
    """The backend `runtime.backend: auto` picks for a model with these layers, or
    tensorflow when it cannot tell (the error then shows when a backend is imported)."""
    try:
        return backend_for("auto", layer_types)[0]
    except ConfigError:
        return "tensorflow"


def _needs(backend: str, installed: list[str], why: str) -> tuple[str, str]:
    if backend not in installed:
        raise ConfigError(Problem(f"{why}, and {backend} is not installed; install it or set runtime.backend",
                                  where="runtime.backend"))
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
    ("tensorflow", {"conv"}, ("a convolutional model: TensorFlow trains convolutions fastest here "
                             "(4.4x JAX per epoch on CPU; benchmarks/README.md, 'Which backend')")),
    ("jax", None, ("JAX trains dense, table and recurrent models fastest here "
                  "(1.6-8.8x TensorFlow per epoch on CPU, and starts faster; benchmarks/README.md, 'Which backend')")),
    ("tensorflow", None, "JAX is not installed; TensorFlow is the next fastest"),
]


def runtime_problems(runtime) -> list[tuple[tuple, str]]:
    """Settings the chosen backend cannot honour, as [(config path, message)]: found before
    any backend is imported, so `validate` reports them even where it is not installed."""
    found = []
    backend, distribution = runtime.backend, runtime.distribution
    if distribution == "mirrored" and backend != "tensorflow":
        found.append((("runtime", "distribution"),
                      f"'mirrored' is TensorFlow's MirroredStrategy; on {backend} use distribution: "
                      + ("data_parallel" if backend == "jax" else "none")))
    if distribution == "data_parallel" and backend != "jax":
        found.append((("runtime", "distribution"),
                      f"'data_parallel' (keras.distribution) runs on runtime.backend: jax; on {backend} use "
                      + ("mirrored" if backend == "tensorflow" else "none")))
    steps = runtime.steps_per_execution
    if backend == "torch" and steps not in ("auto", 1):
        found.append((("runtime", "steps_per_execution"),
                      f"Keras's torch backend runs one step per execution, got {steps}; set 1 or auto"))
    return found


def choose_runtime(runtime, devices: list[dict], steps_per_epoch: int, processes: int = 1) -> dict:
    """Concrete settings for `runtime:`; 'auto' picks what is fast on these devices (those of
    every process, in a run of several `processes`).

    Call `runtime_problems` first: a setting the backend cannot honour is an error there.
    """
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
    replicas = compute_devices(devices)
    if distribution == "auto":
        several = len(replicas) >= 2  # several GPUs, or a CPU split by DLCLI_CPU_DEVICES
        distribution = {"tensorflow": "mirrored", "jax": "data_parallel"}.get(runtime.backend, "none") if several else "none"
    if processes > 1 and distribution != "data_parallel":
        raise ConfigError(Problem(
            f"{processes} processes share the training through distribution: data_parallel (or auto), "
            f"got {distribution}", where="runtime.distribution"))
    steps = runtime.steps_per_execution
    if distribution == "mirrored" and steps not in ("auto", 1):
        raise ConfigError(Problem(
            f"steps_per_execution {steps} with distribution 'mirrored' fails in Keras 3 "
            "(keras-team/keras#19246: 'You must feed a value for placeholder tensor'); set 1 or auto",
            where="runtime.steps_per_execution"))
    if steps == "auto":
        # Running several steps per call to the compiled function removes most per-step
        # Python overhead; callbacks then see progress every few steps, not every step.
        # Keras's torch backend takes only one, and so does MirroredStrategy (keras#19246).
        one = runtime.backend == "torch" or distribution == "mirrored"
        steps = 1 if one else max(1, min(steps_per_epoch, STEPS_PER_EXECUTION_CAP))
    return {
        "backend": runtime.backend,
        "precision": precision,
        "jit_compile": runtime.jit_compile,
        "steps_per_execution": steps,
        "distribution": distribution,
        "replicas": len(replicas) if distribution != "none" else 1,
        "processes": processes,
        "deterministic": runtime.deterministic,
        "devices": devices,
    }


def compute_devices(devices: list[dict]) -> list[dict]:
    """The devices a distribution spreads over: the GPUs, or else the (split) CPU."""
    gpus = [d for d in devices if d["type"] == "GPU"]
    return gpus or [d for d in devices if d["type"] == "CPU"]


def _keep_tensorflow_out() -> None:
    """On the JAX and torch backends, Keras asks `tf.available` (which imports TensorFlow,
    ≈ 3 s, wherever it is installed) to seed it, to serialize a model, to recognise tf.data
    inputs: none of which such a run uses. Tell Keras's lazy module that TensorFlow is
    absent unless something has loaded it (a feature that needs TensorFlow imports it itself)."""
    from keras.src.utils import module_utils

    lazy = getattr(module_utils, "tensorflow", None)
    if "tensorflow" not in sys.modules and hasattr(lazy, "_available"):
        lazy._available = False


def apply_runtime(keras, choices: dict, seed: int):
    """Set seeds, precision and determinism; return the scope to build the model in."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(choices["precision"])
    if choices["deterministic"]:
        make_deterministic(choices["backend"])
    devices = compute_devices(choices["devices"])
    if choices["distribution"] == "mirrored":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=[d["id"] for d in devices]).scope()
    if choices["distribution"] == "data_parallel":
        allow_uneven_batches()
        kind = "gpu" if devices and devices[0]["type"] == "GPU" else "cpu"
        distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices(kind))
        # Several processes: each feeds its own share of every batch (dlcli.training.distributed),
        # which Keras puts together into the global batch.
        distribution.auto_shard_dataset = choices.get("processes", 1) == 1
        keras.distribution.set_distribution(distribution)
    return contextlib.nullcontext()


def allow_uneven_batches() -> None:
    """Let Keras's DataParallel (JAX) take a batch its devices cannot split evenly.

    Keras shards every batch over the devices and refuses a batch whose size the device
    count does not divide (the last batch of an odd split: `IndivisibleError`; Keras does not
    pad: keras-team/keras#20082, #21167). Such a batch is instead given to every device
    whole: each computes the same step, which is the single-device step, so nothing is
    dropped or padded and the numbers match a run on one device. Only within one process;
    a multi-process run keeps Keras's own rule.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    from keras.src.backend.jax import distribution_lib

    original = distribution_lib.distribute_data_input
    if getattr(original, "dlcli_uneven", False):
        return

    def distribute_data_input(per_process_batch, layout, batch_dim_name):
        sharding = getattr(layout, "backend_layout", layout)
        parts = getattr(sharding, "mesh", None) and sharding.mesh.shape.get(batch_dim_name)
        if parts and jax.process_count() == 1 and per_process_batch.shape[0] % parts:
            return jax.device_put(per_process_batch, NamedSharding(sharding.mesh, PartitionSpec()))
        return original(per_process_batch, layout, batch_dim_name)

    distribute_data_input.dlcli_uneven = True
    distribution_lib.distribute_data_input = distribute_data_input


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

        if any(device.platform != "cpu" for device in jax.devices()):  # XLA's CPU ops are deterministic
            raise ConfigError(Problem(
                "runtime.deterministic on JAX must be set before JAX starts; run it in a process of its own"
            ))


def environment() -> dict:
    """Versions, the Keras backend, the devices it sees and the precision each supports.

    The backend is the one `runtime.backend: auto` picks for an MLP ($KERAS_BACKEND when
    set). Mixed precision: float16 from GPU compute capability 7.0, bfloat16 from 8.0; on
    CPU only float32 pays off.
    """
    source = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "default"
    backend, why = backend_for()
    import_keras(backend, where="KERAS_BACKEND" if source != "default" else "")
    devices = list_devices(backend)
    _add_gpu_memory(devices)
    gpus = [d for d in devices if d["type"] == "GPU"]
    for gpu in gpus:
        capability = tuple(gpu.get("compute_capability") or (0, 0))
        gpu["float16"] = capability >= MIN_CAPABILITY_FLOAT16
        gpu["bfloat16"] = capability >= MIN_CAPABILITY_BFLOAT16
    from dlcli.config.schema import RuntimeConfig  # the schema's defaults: what `auto` picks

    auto = choose_runtime(RuntimeConfig(backend=backend), devices, 1)["precision"]
    return {
        **versions(backend), "backend_from": source, "backend_reason": why, "backends_installed": installed_backends(),
        "cpu_count": os.cpu_count(), "devices": devices,
        "precision": {
            "auto": auto,
            "mixed_float16": bool(gpus) and all(g["float16"] for g in gpus),
            "mixed_bfloat16": bool(gpus) and all(g["bfloat16"] for g in gpus),
            "cpu_bfloat16": cpu_has_bfloat16(),
            "explicit": precision_effects(gpus),
        },
    }


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (Linux's /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def precision_effects(gpus: list[dict]) -> dict[str, str]:
    """What each explicit `runtime.precision` does on these GPUs (none: the CPU). dlcli
    honours an explicit precision wherever it runs; this says whether it pays."""
    effects = {"float32": "float32 math and weights: works everywhere"}
    for policy, kind, least in (("mixed_float16", "float16", MIN_CAPABILITY_FLOAT16),
                                ("mixed_bfloat16", "bfloat16", MIN_CAPABILITY_BFLOAT16)):
        if not gpus:
            if kind == "bfloat16" and cpu_has_bfloat16():
                effects[policy] = ("bfloat16 math on the CPU: this CPU has bfloat16 instructions (AVX512_BF16 or "
                                   "AMX), so it may run faster than float32, at some cost in accuracy; measure it; "
                                   "auto keeps float32")
            else:
                effects[policy] = (f"{kind} math on the CPU: it runs, but slower than float32 (this CPU has no fast "
                                   f"{kind}; on TensorFlow float16 is many times slower); auto keeps float32")
            continue
        slow = [g for g in gpus if tuple(g.get("compute_capability") or (0, 0)) < least]
        if slow:
            shown = ", ".join(f"{g['name']} ({'.'.join(map(str, g.get('compute_capability') or ())) or '?'})"
                              for g in slow)
            effects[policy] = (f"{kind} math runs, but {shown} lack{'s' if len(slow) == 1 else ''} fast {kind} "
                               f"(compute capability {least[0]}.{least[1]} or more): expect it slower than float32")
        else:
            effects[policy] = (f"{kind} math with float32 weights on the GPUs' tensor cores (compute capability "
                               f"{least[0]}.{least[1]} or more); the last layer's output stays float32")
    return effects


def _add_gpu_memory(devices: list[dict]) -> None:
    """Fill in GPU memory from nvidia-smi where the backend did not report it."""
    gpus = [d for d in devices if d["type"] == "GPU"]
    if not gpus or all("memory_gb" in g for g in gpus):
        return
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return
    try:
        out = subprocess.run([exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             check=False, capture_output=True, text=True, timeout=10).stdout
        sizes = [round(float(line) / 1024, 1) for line in out.split()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return
    if len(sizes) == len(gpus):
        for gpu, size in zip(gpus, sizes):
            gpu.setdefault("memory_gb", size)
