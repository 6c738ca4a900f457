"""What every file source shares: the check that a data file is a regular file, the
SHA-256 a run records, the not-found wording, and whether the data is read in parts
(`data.streaming`), which with `auto` depends on this machine's memory (`machine_memory`)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from dlcli.errors import ConfigError, Problem
from dlcli.files import regular_file

NOT_FOUND = "data file not found; check data.path (relative paths start at the config's folder)"


def data_file(path: str | Path) -> Path:
    """`path` when it names a regular file, checked before anything opens it.

    A ConfigError naming the path otherwise: missing (the not-found wording), a folder, or a
    FIFO or device such as /dev/zero, which would block forever or never end.
    """
    if not os.path.exists(path):
        raise ConfigError(Problem(NOT_FOUND, where=str(path)))
    return regular_file(path, "data file")


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256 (run.json records it): read once per version of the file in a
    process, so checking a run's files and then loading them reads them once."""
    stat = os.stat(path)
    return _sha256(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, inode: int, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed_files(recorded: dict) -> list[str]:
    """The files of `recorded` (path -> SHA-256, as run.json keeps them) whose content is
    no longer what was recorded; a missing file is left to the reader that needs it."""
    changed = []
    for path, digest in recorded.items():
        if isinstance(path, str) and os.path.isfile(path) and sha256_file(path) != digest:
            changed.append(path)
    return changed


def machine_memory() -> int:
    """This machine's physical memory in bytes (8 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return 8 << 30


def streams(config) -> bool:
    """Whether the config's data files are read a piece at a time instead of whole:
    `data.streaming` when true or false; with `auto`, when the files (`path` and `test_path`)
    take more than a quarter of `machine_memory()` on disk."""
    setting = config.data.streaming
    if setting != "auto":
        return bool(setting)
    paths = [p for p in (config.data.path, config.data.test_path) if p]
    size = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    return bool(paths) and size > machine_memory() // 4
