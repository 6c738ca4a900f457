"""The run folder: `<runs dir>/<name>-<YYYYMMDD-HHMMSS>[-N]/` and the files in it.

A new folder is staged and claimed by a rename, so any number of processes starting at
once get distinct folders; the process that trains a run holds an exclusive lock on its
`.lock` file for its whole life (the system drops it on any exit, `kill -9` included), so
two processes never train one folder.

A run folder is dlcli's own: a symbolic link, FIFO or device planted in it is never
followed, read or written through (`RunFolder.file` refuses it), and only files dlcli names
itself are ever deleted. Every file goes through `dlcli.files` (temp file + rename), so a
reader (or a `kill -9`) never sees half a file; `history.csv` and `evaluations.jsonl` are
append-only, one complete line per write. A run's status is read here too: `running` whose
process is gone from this host is `killed`. This module is storage: it imports neither
TensorFlow nor Keras and knows nothing of how a run trains or what its metrics mean.
"""

from __future__ import annotations

import csv
import errno
import heapq
import json
import os
import re
import shutil
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.files import append_line, atomic_write, csv_text, json_text, read_csv_text, save
from dlcli.runs.record import RunRecord, effective_status, process_alive  # noqa: F401 - re-exported

DEFAULT_RUNS_DIR = "runs"
LOCK = ".lock"
# The largest run-folder file dlcli reads back as text (JSON, CSV, YAML): its own are far smaller.
READ_LIMIT = 64 << 20
# What a killed `dlcli.files.save` leaves: `.NAME.XXXXXXXX.tmp[.SUFFIX]`.
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_HELD_LOCKS: dict[str, int] = {}  # run path -> open lock file: held until the process exits


class UnsafeRunFolder(ConfigError):
    """A run folder holds something dlcli did not put there and will not follow (exit 2)."""


def runs_dir_from(option: str | os.PathLike | None) -> Path:
    """The runs dir: the option, else $DLCLI_RUNS_DIR, else ./runs."""
    return Path(option or os.environ.get("DLCLI_RUNS_DIR") or DEFAULT_RUNS_DIR)


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class RunFolder:
    """One run's folder and the reading and writing of its files.

    Example:
        >>> run = RunFolder.create("runs", "digits-mlp")
        >>> run.update(status="running")
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @classmethod
    def create(
        cls,
        runs_dir: str | os.PathLike,
        name: str,
        record: RunRecord | dict | None = None,
        files: dict[str, str] | None = None,
        record_file: str = "run.json",
    ) -> RunFolder:
        """Claim a new run folder that appears whole: run.json (`record` plus `id`; a sweep
        folder names its record `sweep.json`) and
        `files` are written into a hidden staging folder, which is then renamed into
        place. The rename fails when the name is taken (every run folder holds files), so
        concurrent processes get distinct folders, and a kill leaves either nothing
        visible or a folder whose run.json says what it was."""
        runs = Path(runs_dir)
        try:
            runs.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=runs))
        except OSError as exc:
            raise ConfigError(
                Problem(
                    f"cannot create the runs dir: {exc.strerror}; choose another with --runs-dir",
                    where=str(runs),
                )
            ) from None
        try:
            _take_lock(staging / LOCK, str(staging))  # the lock moves with the folder
            for relative, text in (files or {}).items():
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(staging / relative, text)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            for attempt in range(1, 10_000):
                folder = runs / (f"{name}-{stamp}" if attempt == 1 else f"{name}-{stamp}-{attempt}")
                content = dict(
                    record.to_json() if isinstance(record, RunRecord) else (record or {})
                )
                content.pop("id", None)
                atomic_write(
                    staging / record_file,
                    json_text({"id": folder.name, **content}, indent=2) + "\n",
                )
                if folder.exists():
                    continue
                try:
                    os.rename(staging, folder)
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        continue
                    raise
                _HELD_LOCKS[str(folder)] = _HELD_LOCKS.pop(str(staging))
                return cls(folder)
            raise ConfigError(
                Problem("too many runs with this name in one second", where=str(runs))
            )
        except OSError as exc:
            raise ConfigError(
                Problem(
                    f"cannot write a run folder: {exc.strerror}; choose another with --runs-dir",
                    where=str(runs),
                )
            ) from None
        finally:
            if staging.exists():
                _release_lock(str(staging))
                shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def find(
        cls, ref: str | os.PathLike | None, runs_dir: str | os.PathLike | None = None
    ) -> RunFolder:
        """A run by folder path, by id under the runs dir, or `latest` (also when None)."""
        runs = runs_dir_from(runs_dir)
        if ref in (None, "", "latest"):
            newest = latest_run(runs)
            if newest is None:
                raise ConfigError(
                    Problem(
                        "no runs yet; train one first with `dlcli train CONFIG`", where=str(runs)
                    )
                )
            return newest
        candidate = Path(ref)
        for path in (candidate, runs / str(ref)):
            if (path / "run.json").is_file():
                return cls(path)
        hint = ""
        if runs.is_dir():
            hint = did_you_mean(str(ref), [p.name for p in runs.iterdir() if p.is_dir()])
        raise ConfigError(
            Problem(
                f"no run '{ref}' (neither a run folder nor an id in {runs}){hint}; `dlcli runs` lists them"
            )
        )

    # -- files ---------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        """The path of `name` (such as `checkpoints/state.json`) in the folder, after making
        sure nothing on the way is a symbolic link and that what is there is a plain file or
        folder: an `UnsafeRunFolder` (exit 2) otherwise."""
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise UnsafeRunFolder(
                Problem(f"{name!r} is not a name inside a run folder", where=str(self.path))
            )
        path = self.path
        for part in parts:
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                break
            except OSError as exc:
                raise UnsafeRunFolder(
                    Problem(f"cannot inspect it: {exc.strerror}", where=str(path))
                ) from None
            if stat.S_ISLNK(mode):
                raise UnsafeRunFolder(
                    Problem(
                        "is a symbolic link; dlcli never follows links inside a run folder: remove it",
                        where=str(path),
                    )
                )
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UnsafeRunFolder(
                    Problem(
                        "is not a regular file or folder (a FIFO, device or socket): remove it",
                        where=str(path),
                    )
                )
        return self.path / name

    def folder(self, name: str) -> Path:
        """A sub-folder dlcli writes into (`checkpoints`, `tensorboard`): created if missing,
        and refused (`UnsafeRunFolder`) when anything inside it is a link or special file."""
        path = self.file(name)
        path.mkdir(exist_ok=True)
        for root, dirs, files in os.walk(path):
            for entry in [*dirs, *files]:
                self.file(str(Path(root, entry).relative_to(self.path)))
        return path

    def read_text(self, name: str, limit: int = READ_LIMIT) -> str | None:
        """A file's text, or None when it is missing, unreadable, a link or special file, or
        larger than `limit` (a run folder's own files never are)."""
        try:
            path = self.file(name)
            with open(path, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None
                data = handle.read(limit + 1)
        except (OSError, UnsafeRunFolder):
            return None
        if len(data) > limit:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def read_json(self, name: str, default=None):
        """A JSON file's content, or `default` when it is missing or unreadable."""
        text = self.read_text(name)
        if text is None:
            return default
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # ValueError covers bad JSON
            return default

    def write_json(self, name: str, data) -> None:
        atomic_write(self.file(name), json_text(data, indent=2) + "\n")

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.file(name), text)

    def save(self, name: str, write) -> None:
        """Write a file with `write(tmp_path)` (Keras's `model.save`, a figure's `savefig`)
        and rename it into place: see `dlcli.files.save`."""
        save(self.file(name), write)

    def remove(self, name: str) -> None:
        """Delete one file dlcli wrote (never a link's target, never a folder)."""
        path = self.file(name)
        if path.is_file():
            path.unlink(missing_ok=True)

    def remove_temp_files(self) -> None:
        """Temp files a killed writer left (`.name.XXXXXXXX.tmp...`): never read, safe to drop."""
        for folder in ("", "checkpoints/"):
            path = self.file(folder) if folder else self.path
            if path.is_dir():
                for entry in os.listdir(path):
                    if TEMP_NAME.match(entry):
                        self.remove(f"{folder}{entry}")

    def lock(self) -> None:
        """Hold the run's lock for the life of this process; a ConfigError naming the
        process that holds it otherwise."""
        if str(self.path) not in _HELD_LOCKS:
            self.file(LOCK)
            _take_lock(self.path / LOCK, str(self.path))

    def unlock(self) -> None:
        """Let the run go when this process is done with it (a Python session that trained
        a run lives on; `dlcli export` or `--resume` in another process may then take it)."""
        _release_lock(str(self.path))

    def update(self, **fields) -> RunRecord:
        """Set fields of run.json (`RunRecord`'s names), written atomically; the whole record."""
        record = self.record
        for name, value in fields.items():
            if name not in RunRecord.__dataclass_fields__ or name == "extra":
                raise TypeError(f"run.json has no field {name!r}")
            setattr(record, name, value)
        self.write_record(record)
        return record

    def write_record(self, record: RunRecord) -> None:
        """run.json, whole (atomically)."""
        self.write_json("run.json", record.to_json())

    @property
    def record(self) -> RunRecord:
        """run.json as a `RunRecord` (an empty one, status `incomplete`, when it is missing or
        not a JSON object)."""
        return RunRecord.from_json(self.read_json("run.json", {}))

    def append_history(self, row: dict) -> None:
        """One epoch's row, appended whole; the first row writes the header."""
        path = self.file("history.csv")
        if not path.exists() or path.stat().st_size == 0:
            self._history_columns = list(row)
            append_line(path, csv_text([row], self._history_columns))
            return
        if getattr(self, "_history_columns", None) is None:
            self._history_columns = next(iter(self._csv_rows("history.csv")), [])
        append_line(path, csv_text([row], self._history_columns, header=False))

    def rewrite_history(self, rows: list[dict]) -> None:
        """Replace history.csv with `rows` (a resume drops rows past the last checkpoint)."""
        self._history_columns = None
        if not rows:
            self.remove("history.csv")
            return
        atomic_write(self.file("history.csv"), csv_text(rows))

    def history(self) -> list[dict]:
        """history.csv as a list of rows with numbers as floats (epoch as int)."""
        rows = self._csv_rows("history.csv")
        header, out = (rows[0] if rows else []), []
        for cells in rows[1:]:
            if len(cells) != len(header):
                continue  # a torn last line from a killed writer
            parsed = {k: _number(v) for k, v in zip(header, cells)}
            try:
                parsed["epoch"] = int(parsed["epoch"])
            except (KeyError, TypeError, ValueError):
                continue  # not a row dlcli wrote
            out.append(parsed)
        return out

    def _csv_rows(self, name: str) -> list[list[str]]:
        text = self.read_text(name)
        if text is None:
            return []
        try:
            return read_csv_text(text)
        except csv.Error:
            return []

    def append_evaluation(self, record: dict) -> None:
        append_line(self.file("evaluations.jsonl"), json_text(record))

    def evaluations(self) -> list[dict]:
        """evaluations.jsonl's entries (a torn last line from a killed writer is skipped)."""
        lines = (self.read_text("evaluations.jsonl") or "").splitlines()
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out


def latest_run(runs_dir: Path) -> RunFolder | None:
    """The newest run (by its start time in run.json; ties: the larger folder name) in a
    runs dir, reading run.json only of the folders that may be it (`newest_first`)."""
    if not runs_dir.is_dir():
        return None
    base = str(runs_dir)

    def started(name: str):
        record = read_json_at(os.path.join(base, name, "run.json"))
        if not isinstance(record, dict) or not record:
            return None  # not a run (a sweep, a stray or half-made folder)
        return timestamp(record.get("started")) or 0.0, None

    newest = newest_first(folder_names(runs_dir), started, 1)
    return RunFolder(runs_dir / newest[0][1]) if newest else None


# -- listing many run folders -----------------------------------------------------------------

# The end of a folder name dlcli made: `-YYYYMMDD-HHMMSS`, then `-N` when that second was taken.
STAMP = re.compile(r"-(\d{8}-\d{6})(?:-\d+)?$")
# A stamp is the local wall-clock time of the machine that made the folder, a moment after
# run.json's `started` was taken on the same clock. UTC offsets run from -12:00 to +14:00, so
# the moment a stamp names is at most 12 hours after the stamp read as UTC; 14 is a margin.
STAMP_SLACK = 14 * 3600.0


def folder_names(runs_dir: str | os.PathLike) -> list[str]:
    """The names of the folders in a runs dir that may be runs (not hidden); OSError as
    `os.scandir` raises it (FileNotFoundError for a missing runs dir)."""
    with os.scandir(runs_dir) as entries:
        return [
            entry.name for entry in entries if not entry.name.startswith(".") and entry.is_dir()
        ]


def stamp_time(name: str, local: bool = False) -> float | None:
    """The time at the end of a run folder's name (`digits-mlp-20261121-082033[-2]`) in
    seconds since the epoch, read as UTC (or as this machine's local time); None without one."""
    match = STAMP.search(name)
    if match is None:
        return None
    text = match.group(1)
    try:  # by hand: strptime takes longer than everything else `dlcli runs -n 20` does per folder
        when = datetime(
            int(text[:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=None if local else timezone.utc,
        )
    except ValueError:
        return None
    return when.timestamp()


def newest_first(names: list[str], read, count: int | None = None) -> list[tuple]:
    """The `count` folders (every one when None) that `read` dates newest, newest first.

    `read(name)` returns (time, payload), or None to leave the folder out; the result is
    [(time, name, payload)], ordered by (time, name) from the largest, as sorting them all
    would. With a `count`, a folder whose name ends in dlcli's stamp is read only while it
    could still be among the newest: its time is at most its stamp (read as UTC) plus
    `STAMP_SLACK` (true of every folder dlcli made, whose `started` precedes its name). A
    folder without a stamp is always read; one found later than its stamp allows (not named
    by dlcli) makes it read them all.
    """
    found: list[tuple] = []
    if count is None:
        for name in names:
            got = read(name)
            if got is not None:
                found.append((got[0], name, got[1]))
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return found
    bounded, unbounded = [], []
    for name in names:
        stamp = stamp_time(name)
        if stamp is None:
            unbounded.append(name)
        else:
            bounded.append((stamp + STAMP_SLACK, name))
    bounded.sort(reverse=True)
    trust = True

    def offer(name: str, bound: float | None) -> None:
        nonlocal trust
        got = read(name)
        if got is None:
            return
        if bound is not None and got[0] > bound:
            trust = False
        item = (got[0], name, got[1])  # names are unique: a payload is never compared
        if len(found) < count:
            heapq.heappush(found, item)
        elif item[:2] > found[0][:2]:
            heapq.heapreplace(found, item)

    for name in unbounded:
        offer(name, None)
    for bound, name in bounded:
        if trust and len(found) >= count and found[0][:2] > (bound, name):
            break  # no folder left can be newer than the ones found
        offer(name, bound)
    return sorted(found, key=lambda item: (item[0], item[1]), reverse=True)


def read_json_at(path: str, default=None):
    """`RunFolder.read_json` for a file directly in a run folder, given by its path: the
    same refusals (a link, FIFO or device is never opened; over `READ_LIMIT`, not UTF-8, not
    JSON: `default`), without pathlib, which costs more than the read when the catalogue
    reads thousands of small files."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return default
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return default
    try:
        info = os.fstat(fd)  # the file may have been swapped since the lstat
        if not stat.S_ISREG(info.st_mode) or info.st_size > READ_LIMIT:
            return default
        want = info.st_size + 1  # one byte more than its size: a short read is the end of the file
        chunks, size = [], 0
        while size <= READ_LIMIT:
            chunk = os.read(fd, want)
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < want:
                break
            want = 1 << 16  # it grew since the fstat
        if size > READ_LIMIT:
            return default
        return json.loads(b"".join(chunks).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError and bad JSON are ValueErrors
        return default
    finally:
        os.close(fd)


def _take_lock(path: Path, key: str) -> None:
    """An exclusive, non-blocking lock on `path` (created if missing) that this process
    keeps until it exits; a ConfigError naming the holder's pid when another has it."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:  # read-only, not ours, or not a file
        raise ConfigError(
            Problem(
                f"cannot lock the run folder ({exc.strerror}); dlcli must be able to write "
                "in it: check its permissions",
                where=str(path),
            )
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeRunFolder(Problem("is not a regular file: remove it", where=str(path)))
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ConfigError(
                Problem(
                    f"the run is in use by process {holder}; wait for it to end or stop it",
                    where=str(path.parent),
                )
            ) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD_LOCKS[key] = fd


def _release_lock(key: str) -> None:
    fd = _HELD_LOCKS.pop(key, None)
    if fd is not None:
        os.close(fd)


def timestamp(text) -> float | None:
    """An ISO time (any UTC offset) as seconds since the epoch; None if it is not one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text
