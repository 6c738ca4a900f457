"""JAX's persistent compilation cache, so that a second run of a config compiles nothing.

On the JAX backend every function Keras traces (the train, test and predict steps, and the
small eager ops that build the model) is compiled by XLA: 1–3 s of a short run. JAX can keep
the compiled programs on disk, keyed by the program and the devices; `start()` turns that on
before anything is compiled, in `<Keras home>/jax_cache` (`$KERAS_HOME`, else `~/.keras`,
where Keras keeps its datasets), every program whatever its compile time, at most
`MAX_BYTES` (least recently used entries go first).

`DLCLI_COMPILE_CACHE=off` turns it off; `DLCLI_COMPILE_CACHE=DIR` (or JAX's own
`JAX_COMPILATION_CACHE_DIR`) puts it elsewhere. `record()` is what run.json keeps: the
folder, and how many programs came from it (`hits`) and were written to it (`writes`).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from pathlib import Path

from dlcli.runtime import compat

MAX_BYTES = 2 * 2**30

_STATE: dict = {"dir": None, "hits": 0, "writes": 0}


def folder() -> Path | None:
    """Where the cache goes, or None when it is off."""
    chosen = os.environ.get("DLCLI_COMPILE_CACHE", "").strip()
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    return compat.keras_home() / "jax_cache"


def start() -> None:
    """Point JAX at the cache and count its hits and writes (JAX imported, nothing compiled)."""
    path = folder()
    if path is None or _STATE["dir"] is not None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # JAX would fail to write into it silently
            pass
    except OSError as exc:  # a read-only home: compile as usual; a folder the user chose: say so
        if os.environ.get("DLCLI_COMPILE_CACHE", "").strip() or os.environ.get(
            "JAX_COMPILATION_CACHE_DIR"
        ):
            _STATE["warning"] = (
                f"the compilation cache {path} cannot be written ({exc.strerror or exc}); "
                "compiling without it: point DLCLI_COMPILE_CACHE at a writable folder, or set it to off"
            )
        return
    import jax
    from jax import monitoring

    # A cache JAX cannot read or write is only a slower run: never a line on the user's stderr.
    warnings.filterwarnings(
        "ignore", message=r"Error (reading|writing) persistent compilation cache"
    )
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if (
        importlib.util.find_spec("filelock") is not None
    ):  # JAX evicts under a file lock; without it, no bound
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    monitoring.register_event_listener(_count)
    _STATE["dir"] = str(path)


def _count(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _STATE["hits"] += 1
    elif (
        event == "/jax/compilation_cache/cache_misses"
    ):  # JAX's name for a program written to the cache
        _STATE["writes"] += 1


def take_warning() -> str | None:
    """The line to tell the user once, when the folder they chose for the cache is unusable."""
    return _STATE.pop("warning", None)


def record() -> dict | None:
    """{'dir', 'hits', 'writes'} for run.json, or None when the cache is off (or not JAX)."""
    if _STATE["dir"] is None:
        return None
    return dict(_STATE)
