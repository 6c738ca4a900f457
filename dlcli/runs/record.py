"""run.json as a typed record: `RunRecord` (and its `data` section, `DataRecord`).

A run's record is written by training (created, updated as the run goes, finished) and read
by everything after it (`runs`, `show`, `evaluate`, `predict`, `export`, `--resume`). This is
the one place that knows its keys and their types. Reading is forgiving: a field of the wrong
type (an edited or damaged file) reads as absent, and keys dlcli does not know are kept
(`extra`) and written back, so an older or newer dlcli's record survives a rewrite.

Example:
    >>> record = RunRecord.from_json(json.loads(Path("runs/x/run.json").read_text()))
    >>> record.status, record.data.task, record.data.files
    ('completed', 'classification', {'/data/adult.csv': '9f2c...'})
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# Fields written only when they hold something (older records lack them).
OPTIONAL = (
    "error",
    "failed_epoch",
    "processes",
    "compile_cache",
    "metric_directions",
    "class_weight",
    "mlflow",
)


def _typed(value, kind):
    """`value` when it is of `kind` (a type or tuple of types; bool never counts as a
    number), else None: what a damaged field reads as."""
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        return None
    return value if isinstance(value, kind) else None


@dataclass
class DataRecord:
    """run.json's `data`: where the samples came from and how they were split."""

    source: str | None = None
    task: str | None = None  # classification | regression
    samples: dict = field(default_factory=dict)  # split -> count
    classes: int | None = None
    input_shape: list | None = None
    features: list | None = None
    target: str | None = None
    files: dict = field(default_factory=dict)  # data file path -> SHA-256
    streaming: bool | None = None
    fingerprint: str | None = None
    fingerprint_of: str | None = None
    rows: dict = field(default_factory=dict)  # file -> rows read / dropped
    target_scale: dict | None = None  # regression: {mean, std} the model's output undoes
    images: dict | None = None  # layout, image_size, color_mode, classes, skipped files
    text: dict | None = None  # layout, classes, skipped files, the vocabulary's summary
    audio: dict | None = None  # layout, sampling_rate, output_sequence_length, classes, ...
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data) -> DataRecord:
        return _from_json(cls, data if isinstance(data, dict) else {})

    def to_json(self) -> dict:
        out = _to_json(self)
        for name in ("target_scale", "images", "text", "audio"):
            if out[name] is None:
                del out[name]
        return out


@dataclass
class RunRecord:
    """run.json: what a run is, how it went and what it ran on."""

    id: str | None = None  # the folder's name (RunFolder.create writes it)
    name: str | None = None
    status: str = (
        "incomplete"  # running | completed | failed | interrupted (incomplete: no readable file)
    )
    started: str | None = None  # ISO 8601 with the time zone
    ended: str | None = None
    duration_s: float | None = None
    command: str | None = None
    seed: int | None = None
    pid: int | None = None
    host: str | None = None
    versions: dict = field(default_factory=dict)  # dlcli, keras, backend, backend_version, python
    devices: list = field(default_factory=list)
    runtime: dict = field(default_factory=dict)  # `dlcli.runtime.choices.Choices.record()`
    processes: dict | None = None  # several processes: their count and devices
    data: DataRecord = field(default_factory=DataRecord)
    parameters: dict = field(default_factory=dict)  # total, trainable, non_trainable
    epochs: int | None = None  # the configured total
    class_weight: dict | None = None  # label -> its weight in the training loss, as resolved
    resumes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    metric_directions: dict = field(default_factory=dict)
    compile_cache: dict | None = None
    error: str | None = None
    failed_epoch: int | None = None  # the loss became NaN/inf in this epoch
    mlflow: dict | None = None  # tracking_uri (password masked), experiment(_id), run_id, error
    extra: dict = field(default_factory=dict)  # keys this dlcli does not know, kept as they were

    @classmethod
    def from_json(cls, data) -> RunRecord:
        """The record in run.json's content (any JSON value: a non-object reads as empty)."""
        record = _from_json(cls, data if isinstance(data, dict) else {})
        record.data = DataRecord.from_json(data.get("data") if isinstance(data, dict) else None)
        return record

    def to_json(self) -> dict:
        """run.json's content: the fields in their usual order, then the unknown keys."""
        out = _to_json(self)
        out["data"] = self.data.to_json()
        for name in OPTIONAL:
            if not out.get(name) and name not in self.extra:
                out.pop(name, None)
        return out

    @property
    def effective_status(self) -> str:
        """The status, with `running` whose process is gone from this host as `killed`."""
        return effective_status({"status": self.status, "host": self.host, "pid": self.pid})

    @property
    def backend(self) -> str | None:
        """The backend that trained the run (as chosen, `auto` resolved)."""
        return _typed(self.runtime.get("backend"), str)


def _from_json(cls, data: dict):
    """A dataclass from a dict: each known field taken when its type fits, the rest in `extra`."""
    known = {f.name: f for f in fields(cls) if f.name not in ("extra", "data")}
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name not in data:
            continue
        kind = _KINDS.get(str(spec.type), object)
        value = _typed(data[name], kind)
        if value is not None:
            values[name] = value
    record = cls(**values)
    record.extra = {k: v for k, v in data.items() if k not in known and k not in ("extra", "data")}
    return record


def _to_json(record) -> dict:
    out = {f.name: getattr(record, f.name) for f in fields(record) if f.name != "extra"}
    return {**out, **record.extra}


# A field's annotation (as text: `from __future__ import annotations`) -> the types it takes.
_KINDS = {
    "str": str,
    "str | None": str,
    "int | None": int,
    "float | None": (int, float),
    "bool | None": bool,
    "dict": dict,
    "dict | None": dict,
    "list": list,
    "list | None": list,
}


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


__all__ = ["DataRecord", "RunRecord", "effective_status", "process_alive"]
