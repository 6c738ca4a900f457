"""What `dlcli env` reports: versions, the backend `auto` picks, the devices, and what each
precision does on them.
"""

from __future__ import annotations

import os

from dlcli.runtime.backend import backend_for, installed_backends
from dlcli.runtime.choices import choose_runtime
from dlcli.runtime.devices import (
    MIN_CAPABILITY_BFLOAT16,
    MIN_CAPABILITY_FLOAT16,
    add_gpu_memory,
    cpu_has_bfloat16,
    list_devices,
)
from dlcli.runtime.keras_import import import_keras


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
        "dlcli": __version__,
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": backend_version,
        "python": platform.python_version(),
    }


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
    add_gpu_memory(devices)
    gpus = [d for d in devices if d["type"] == "GPU"]
    for gpu in gpus:
        capability = tuple(gpu.get("compute_capability") or (0, 0))
        gpu["float16"] = capability >= MIN_CAPABILITY_FLOAT16
        gpu["bfloat16"] = capability >= MIN_CAPABILITY_BFLOAT16
    from dlcli.config.schema import RuntimeConfig  # the schema's defaults: what `auto` picks

    auto = choose_runtime(RuntimeConfig(backend=backend), devices, 1).precision
    return {
        **versions(backend),
        "backend_from": source,
        "backend_reason": why,
        "backends_installed": installed_backends(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "precision": {
            "auto": auto,
            "mixed_float16": bool(gpus) and all(g["float16"] for g in gpus),
            "mixed_bfloat16": bool(gpus) and all(g["bfloat16"] for g in gpus),
            "cpu_bfloat16": cpu_has_bfloat16(),
            "explicit": precision_effects(gpus),
        },
    }


def precision_effects(gpus: list[dict]) -> dict[str, str]:
    """What each explicit `runtime.precision` does on these GPUs (none: the CPU). dlcli
    honours an explicit precision wherever it runs; this says whether it pays."""
    effects = {"float32": "float32 math and weights: works everywhere"}
    for policy, kind, least in (
        ("mixed_float16", "float16", MIN_CAPABILITY_FLOAT16),
        ("mixed_bfloat16", "bfloat16", MIN_CAPABILITY_BFLOAT16),
    ):
        if not gpus:
            if kind == "bfloat16" and cpu_has_bfloat16():
                effects[policy] = (
                    "bfloat16 math on the CPU: this CPU has bfloat16 instructions (AVX512_BF16 or "
                    "AMX), so it may run faster than float32, at some cost in accuracy; measure it; "
                    "auto keeps float32"
                )
            else:
                effects[policy] = (
                    f"{kind} math on the CPU: it runs, but slower than float32 (this CPU has no fast "
                    f"{kind}; on TensorFlow float16 is many times slower); auto keeps float32"
                )
            continue
        slow = [g for g in gpus if tuple(g.get("compute_capability") or (0, 0)) < least]
        if slow:
            shown = ", ".join(
                f"{g['name']} ({'.'.join(map(str, g.get('compute_capability') or ())) or '?'})"
                for g in slow
            )
            effects[policy] = (
                f"{kind} math runs, but {shown} lack{'s' if len(slow) == 1 else ''} fast {kind} "
                f"(compute capability {least[0]}.{least[1]} or more): expect it slower than float32"
            )
        else:
            effects[policy] = (
                f"{kind} math with float32 weights on the GPUs' tensor cores (compute capability "
                f"{least[0]}.{least[1]} or more); the last layer's output stays float32"
            )
    return effects


__all__ = ["environment", "precision_effects", "versions"]
