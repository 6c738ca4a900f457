"""What every file source shares: the SHA-256 a run records, the not-found wording."""

from __future__ import annotations

import hashlib
from pathlib import Path

NOT_FOUND = "data file not found; check data.path (relative paths start at the config's folder)"


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256 (run.json records it; `evaluate` warns when it changed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
