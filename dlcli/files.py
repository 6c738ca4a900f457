"""Writing files whole: the one atomic-save helper, appends of whole lines, CSV text.

Every file dlcli writes (JSON, CSV, YAML, `.keras`, `.npz`, PNG) goes through `save` or
`atomic_write`: the bytes land in a temporary file in the same folder, which is then
renamed over the target, so a reader or a `kill -9` never sees half a file. Floats in CSV
files are written by `csv_cell` (`repr`: every digit kept, so a value read back is the
value written). This module knows nothing of runs, Keras or training.

Example:
    >>> atomic_write(Path("out/metrics.json"), '{"loss": 0.1}')
    >>> save(Path("out/model.keras"), model.save)   # Keras writes, then one rename
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def save(path: Path, write) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path` (same suffix, since some
    writers choose the format by it), then rename it over `path`.

    The temporary name starts with '.' and holds 'tmp', so a run folder's reader skips it and
    a resume removes what a killed writer left.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run folder is for sharing
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write a whole file or nothing (flushed to disk before the rename)."""
    data = content.encode() if isinstance(content, str) else content

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    save(path, write)


def append_line(path: Path, line: str) -> None:
    """Append one complete line with a single write, flushed to disk."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line if line.endswith("\n") else line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def csv_cell(value):
    """A value as a CSV cell: floats with every digit (`repr`), None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def csv_text(rows: list[dict] | list[list], columns: list[str] | None = None, header: bool = True) -> str:
    """CSV text: a header (`columns`, default the first dict's keys) and one line per row.

    Rows are dicts (missing keys are empty cells) or lists in the order of `columns`;
    `header=False` gives the rows alone (lines appended to an existing file).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if columns is None and rows and isinstance(rows[0], dict):
        columns = list(rows[0])
    if columns is not None and header:
        writer.writerow(columns)
    for row in rows:
        cells = [row.get(c) for c in columns] if isinstance(row, dict) else row
        writer.writerow([csv_cell(v) for v in cells])
    return buffer.getvalue()


def read_csv_rows(path: Path) -> list[list[str]]:
    """Every row of a small CSV file (history.csv, a prediction file) as lists of strings."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def jsonable(value):
    """json.dumps' `default`: numpy scalars and arrays as Python values, else their text."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
