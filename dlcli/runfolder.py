"""The run folder: `<runs dir>/<name>-<YYYYMMDD-HHMMSS>[-N]/` and the files in it.

A new folder is staged and claimed by a rename, so any number of processes starting at
once get distinct folders. Every file goes through `dlcli.files` (temp file + rename), so a
reader (or a `kill -9`) never sees half a file; `history.csv` and `evaluations.jsonl` are
append-only, one complete line per write. A run's status is read here too: `running` whose
process is gone from this host is `killed`. This module is storage: it imports neither
TensorFlow nor Keras and knows nothing of how a run trains or what its metrics mean.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.files import append_line, atomic_write, csv_text, json_text, read_csv_rows, save

DEFAULT_RUNS_DIR = "runs"


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
    def create(cls, runs_dir: str | os.PathLike, name: str, record: dict | None = None,
               files: dict[str, str] | None = None) -> RunFolder:
        """Claim a new run folder that appears whole: run.json (`record` plus `id`) and
        `files` are written into a hidden staging folder, which is then renamed into
        place. The rename fails when the name is taken (every run folder holds files), so
        concurrent processes get distinct folders, and a kill leaves either nothing
        visible or a folder whose run.json says what it was."""
        runs = Path(runs_dir)
        try:
            runs.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=runs))
        except OSError as exc:
            raise ConfigError(Problem(f"cannot create the runs dir: {exc.strerror}; choose another with --runs-dir", where=str(runs))) from None
        try:
            for relative, text in (files or {}).items():
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(staging / relative, text)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            for attempt in range(1, 10_000):
                folder = runs / (f"{name}-{stamp}" if attempt == 1 else f"{name}-{stamp}-{attempt}")
                atomic_write(staging / "run.json", json_text({"id": folder.name, **(record or {})}, indent=2) + "\n")
                if folder.exists():
                    continue
                try:
                    os.rename(staging, folder)
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        continue
                    raise
                return cls(folder)
            raise ConfigError(Problem("too many runs with this name in one second", where=str(runs)))
        except OSError as exc:
            raise ConfigError(Problem(f"cannot write a run folder: {exc.strerror}; choose another with --runs-dir", where=str(runs))) from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def find(cls, ref: str | os.PathLike | None, runs_dir: str | os.PathLike | None = None) -> RunFolder:
        """A run by folder path, by id under the runs dir, or `latest` (also when None)."""
        runs = runs_dir_from(runs_dir)
        if ref in (None, "", "latest"):
            newest = latest_run(runs)
            if newest is None:
                raise ConfigError(Problem("no runs yet; train one first with `dlcli train CONFIG`", where=str(runs)))
            return newest
        candidate = Path(ref)
        for path in (candidate, runs / str(ref)):
            if (path / "run.json").is_file():
                return cls(path)
        hint = ""
        if runs.is_dir():
            hint = did_you_mean(str(ref), [p.name for p in runs.iterdir() if p.is_dir()])
        raise ConfigError(Problem(f"no run '{ref}' (neither a run folder nor an id in {runs}){hint}; `dlcli runs` lists them"))

    # -- files ---------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def read_json(self, name: str, default=None):
        """A JSON file's content, or `default` when it is missing or unreadable."""
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # ValueError covers bad JSON and bad UTF-8
            return default

    def write_json(self, name: str, data) -> None:
        atomic_write(self.file(name), json_text(data, indent=2) + "\n")

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.file(name), text)

    def save(self, name: str, write) -> None:
        """Write a file with `write(tmp_path)` (Keras's `model.save`, a figure's `savefig`)
        and rename it into place: see `dlcli.files.save`."""
        save(self.file(name), write)

    def remove_temp_files(self) -> None:
        """Temp files a killed writer left (`.name.XXXX.tmp...`): never read, safe to drop."""
        for folder in (self.path, self.file("checkpoints")):
            if folder.is_dir():
                for path in folder.glob(".*tmp*"):
                    if path.is_file():
                        path.unlink(missing_ok=True)

    def update(self, **fields) -> dict:
        """Merge fields into run.json (atomically) and return the whole record."""
        record = self.read_json("run.json", {}) or {}
        record.update(fields)
        self.write_json("run.json", record)
        return record

    @property
    def record(self) -> dict:
        record = self.read_json("run.json", {})
        return record if isinstance(record, dict) else {}

    def append_history(self, row: dict) -> None:
        """One epoch's row, appended whole; the first row writes the header."""
        path = self.file("history.csv")
        if not path.exists() or path.stat().st_size == 0:
            self._history_columns = list(row)
            append_line(path, csv_text([row], self._history_columns))
            return
        if getattr(self, "_history_columns", None) is None:
            self._history_columns = next(iter(read_csv_rows(path)), [])
        append_line(path, csv_text([row], self._history_columns, header=False))

    def rewrite_history(self, rows: list[dict]) -> None:
        """Replace history.csv with `rows` (a resume drops rows past the last checkpoint)."""
        self._history_columns = None
        if not rows:
            self.file("history.csv").unlink(missing_ok=True)
            return
        atomic_write(self.file("history.csv"), csv_text(rows))

    def history(self) -> list[dict]:
        """history.csv as a list of rows with numbers as floats (epoch as int)."""
        path = self.file("history.csv")
        if not path.exists():
            return []
        rows = read_csv_rows(path)
        header, out = (rows[0] if rows else []), []
        for cells in rows[1:]:
            if len(cells) != len(header):
                continue  # a torn last line from a killed writer
            parsed = {k: _number(v) for k, v in zip(header, cells)}
            parsed["epoch"] = int(parsed["epoch"])
            out.append(parsed)
        return out

    def append_evaluation(self, record: dict) -> None:
        append_line(self.file("evaluations.jsonl"), json_text(record))

    def evaluations(self) -> list[dict]:
        """evaluations.jsonl's entries (a torn last line from a killed writer is skipped)."""
        try:
            lines = self.file("evaluations.jsonl").read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError):
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out


def latest_run(runs_dir: Path) -> RunFolder | None:
    """The newest run (by its start time in run.json) in a runs dir."""
    if not runs_dir.is_dir():
        return None
    best, best_key = None, None
    for folder in runs_dir.iterdir():
        run = RunFolder(folder)
        record = run.record if folder.is_dir() else {}
        if not record:
            continue
        key = (timestamp(record.get("started")) or 0.0, folder.name)
        if best_key is None or key > best_key:
            best, best_key = run, key
    return best


def timestamp(text) -> float | None:
    """An ISO time (any UTC offset) as seconds since the epoch; None if it is not one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def process_alive(pid) -> bool | None:
    """Whether process `pid` is alive on this host: True, False, or None when it can't tell.

    A zombie counts as dead, and so does a pid the system has since given to a program
    that is not Python (the training process always is).
    """
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return None
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return None
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().lower()
    except (OSError, IndexError):
        return True  # no /proc (macOS): the pid exists, which is all we know
    if state in ("Z", "X"):
        return False
    return not cmdline or b"python" in cmdline or b"dlcli" in cmdline


def effective_status(record: dict) -> str:
    """run.json's status, with `running` whose process is gone from this host as `killed`."""
    status = record.get("status") or "incomplete"
    if status != "running":
        return str(status)
    host = record.get("host")
    if host and host != socket.gethostname():
        return status  # another machine's process: nothing here to check
    return "killed" if process_alive(record.get("pid")) is False else status



def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text
