"""A SQLite database another process keeps locked: how long to wait, who holds it, what to say.

SQLite waits for another connection's lock only as long as its busy timeout, then fails
with `database is locked`. dlcli waits `WAIT_S`, not minutes: a sweep that prints nothing
while it waits looks hung. Then it names the processes that hold the lock (Linux: the
POSIX locks in /proc/locks on the file, else the processes with the file open, from
/proc/*/fd) and says what to do.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dlcli.errors import ConfigError, DlcliError, Problem

WAIT_S = 10  # SQLite's busy timeout: how long one statement waits for another process's lock
SIDE_FILES = ("", "-journal", "-wal", "-shm")  # the database and the files SQLite keeps beside it


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is SQLite's `database is locked`."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if "database is locked" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def database_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` storage URL (None: another kind of database)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def holders(path: str | os.PathLike) -> list[tuple[int, str]]:
    """The other processes that lock `path`, else those that have it open: (pid, command
    name), as far as this user may see them; [] elsewhere than Linux."""
    path = Path(path)
    try:
        found = os.stat(path)
    except OSError:
        return []
    pids = _lockers(found) or _openers(path)
    return [(pid, _command(pid)) for pid in sorted(pids)]


def _lockers(found: os.stat_result) -> set[int]:
    """Pids with a lock on the file: /proc/locks lines `N: POSIX ADVISORY WRITE PID MAJ:MIN:INODE ...`."""
    pids = set()
    with contextlib.suppress(OSError), open("/proc/locks") as handle:
        for line in handle:
            fields = line.split()
            if "->" in fields:  # a waiter, not a holder
                continue
            with contextlib.suppress(ValueError, IndexError):
                major, minor, inode = fields[5].split(":")
                if (int(major, 16), int(minor, 16), int(inode)) == (
                    os.major(found.st_dev),
                    os.minor(found.st_dev),
                    found.st_ino,
                ):
                    pids.add(int(fields[4]))
    pids.discard(os.getpid())
    pids.discard(-1)  # an open-file-description lock: no owner to name
    return pids


def _openers(path: Path) -> set[int]:
    """Pids with the database (or a file SQLite keeps beside it) open."""
    targets = {str(path.resolve()) + suffix for suffix in SIDE_FILES}
    pids = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):  # another user's process, or one that just ended
                for fd in os.scandir(f"/proc/{entry.name}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(fd.path) in targets:
                            pids.add(int(entry.name))
                            break
    return pids


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    return "?"


def locked_error(
    path: str | os.PathLike, then: str, error: type[DlcliError] = ConfigError
) -> DlcliError:
    """The one-line error for a database still locked after `WAIT_S`: what holds it, and
    `then`, the command to run once it is free. `error`: ConfigError (exit 2) before any
    trial, RunFailed (exit 1) after."""
    found = holders(path)
    who = " and ".join(f"pid {pid} ({name})" for pid, name in found) if found else "another process"
    message = f"the database is locked by {who}; wait for it to finish or stop it, then run: {then}"
    if error is ConfigError:
        return ConfigError(Problem(message, where=str(path)))
    return error(f"{path}: {message}")


__all__ = ["WAIT_S", "database_path", "holders", "is_locked", "locked_error"]
