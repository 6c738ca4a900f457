"""The devices a Keras backend sees (CPU, split CPU, GPUs), and what they can do.

Example:
    >>> list_devices("jax")
    [{'type': 'CPU', 'name': 'cpu', 'id': 'cpu:0', 'process': 0}]
"""

from __future__ import annotations

import contextlib
import os

from dlcli.runtime.keras_import import quiet_stderr


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


# Mixed precision pays off from Volta (7.0) on; bfloat16 from Ampere (8.0) on.
MIN_CAPABILITY_FLOAT16 = (7, 0)
MIN_CAPABILITY_BFLOAT16 = (8, 0)


def list_devices(backend: str) -> list[dict]:
    """Devices the backend sees: [{'type': 'CPU'|'GPU', 'name': ..., 'memory_gb': ...}]."""
    with quiet_stderr():  # probing for CUDA logs errors on machines without it
        return _list_devices(backend)


def _list_devices(backend: str) -> list[dict]:
    devices = []
    if backend == "tensorflow":
        import tensorflow as tf

        physical = {d.device_type: d for d in tf.config.list_physical_devices()}
        for (
            dev
        ) in tf.config.list_logical_devices():  # DLCLI_CPU_DEVICES splits the CPU into several
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
            entry = {
                "type": kind,
                "name": getattr(dev, "device_kind", str(dev)),
                "id": f"{dev.platform}:{dev.id}",
                "process": int(getattr(dev, "process_index", 0)),
            }
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
            devices.append(
                {
                    "type": "GPU",
                    "name": props.name,
                    "id": f"cuda:{i}",
                    "compute_capability": [props.major, props.minor],
                    "memory_gb": round(props.total_memory / 2**30, 1),
                }
            )
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


def compute_devices(devices: list[dict]) -> list[dict]:
    """The devices a distribution spreads over: the GPUs, or else the (split) CPU."""
    gpus = [d for d in devices if d["type"] == "GPU"]
    return gpus or [d for d in devices if d["type"] == "CPU"]


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (Linux's /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def add_gpu_memory(devices: list[dict]) -> None:
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
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        sizes = [round(float(line) / 1024, 1) for line in out.split()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return
    if len(sizes) == len(gpus):
        for gpu, size in zip(gpus, sizes):
            gpu.setdefault("memory_gb", size)


__all__ = [
    "MIN_CAPABILITY_BFLOAT16",
    "MIN_CAPABILITY_FLOAT16",
    "add_gpu_memory",
    "compute_devices",
    "cpu_has_bfloat16",
    "enable_memory_growth",
    "list_devices",
]
