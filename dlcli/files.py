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
import errno
import io
import json
import math
import os
import stat
import tempfile
from pathlib import Path

from dlcli.errors import ConfigError, Problem, RunFailed, first_line

# Write failures that are the device's, not the path's (exit 1, as for `> /dev/full`).
DEVICE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
_UMASK = os.umask(0)
os.umask(_UMASK)


def save(path: Path, write) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path` (same suffix, since some
    writers choose the format by it), then rename it over `path`.

    The temporary name starts with '.' and holds 'tmp', so a run folder's reader skips it and
    a resume removes what a killed writer left.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run folder is for sharing
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        # Writers (Keras, zip, numpy) often raise without a file name: name the target.
        raise OSError(exc.errno, exc.strerror or first_line(exc), str(path)) from exc
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


def regular_file(path, what: str = "file", limit: int | None = None) -> Path:
    """`path` when it names a regular file (a symlink to one is fine), at most `limit` bytes.

    A ConfigError (exit 2) naming the path otherwise: missing, a folder, or a FIFO, a device
    (`/dev/zero`), a socket, which would block or never end. Only `stat` is called, so a
    FIFO is refused without being opened.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(Problem(f"no such {what}; check the path", where=str(path))) from None
    except OSError as exc:
        raise ConfigError(
            Problem(f"cannot read the {what}: {exc.strerror}", where=str(path))
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(Problem(f"is a folder, not a {what}", where=str(path)))
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            Problem(
                f"is not a regular file (a FIFO, device or socket); give the {what} as a regular file",
                where=str(path),
            )
        )
    if limit is not None and info.st_size > limit:
        raise ConfigError(
            Problem(
                f"the {what} is {info.st_size:,} bytes, over dlcli's limit of {limit:,}",
                where=str(path),
            )
        )
    return path


def write_output(path, text: str) -> None:
    """Write a file the user named (`predict --output`, `init`, `schema --output`).

    A regular file (or a new one) is written atomically; a symbolic link is kept and its
    target written; a FIFO or device (`/dev/null`, `/dev/stdout`) is written into, as a shell
    redirect does, never replaced by a regular file. A FIFO nobody reads is refused rather
    than waited on. Any failure is a ConfigError naming the path.
    """
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(Problem(f"cannot write it: {exc.strerror}", where=str(path))) from None
    try:
        if mode is None or stat.S_ISREG(mode):
            atomic_write(target, text)
        elif stat.S_ISDIR(mode):
            raise ConfigError(Problem("is a folder; give a file name", where=str(path)))
        else:
            _write_into(target, text.encode("utf-8"))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise ConfigError(
                Problem("is a FIFO that no process reads; start the reader first", where=str(path))
            ) from None
        if exc.errno in DEVICE_FULL:  # the path is fine; the device failed: a run-time failure
            raise RunFailed(
                f"{path}: cannot write it: {exc.strerror or exc}; free disk space"
            ) from None
        raise ConfigError(
            Problem(f"cannot write it: {exc.strerror or exc}", where=str(path))
        ) from None


def _write_into(path: Path, data: bytes) -> None:
    """Write into an existing special file (a FIFO only if a reader is there already)."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    """Append one complete line with a single write, flushed to disk: to a regular file
    only, never through a symbolic link (`OSError` otherwise)."""
    data = (line if line.endswith("\n") else line + "\n").encode("utf-8")
    fd = os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666
    )
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def csv_cell(value):
    """A value as a CSV cell: floats with every digit (`repr`), None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def csv_text(
    rows: list[dict] | list[list], columns: list[str] | None = None, header: bool = True
) -> str:
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


def read_csv_text(text: str) -> list[list[str]]:
    """Every row of CSV text as lists of strings."""
    return list(csv.reader(io.StringIO(text, newline="")))


def json_text(data, indent: int | None = None) -> str:
    """Strict JSON text: NaN and inf become null (bare `NaN` is not JSON), numpy values
    become Python ones, anything else its text."""
    return json.dumps(finite(data), indent=indent, default=jsonable, allow_nan=False)


def finite(value):
    """`value` with every NaN/inf float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return finite(value.item())
    if hasattr(value, "tolist"):
        return finite(value.tolist())
    return value


def jsonable(value):
    """json.dumps' `default`: numpy scalars and arrays as Python values, else their text."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
