"""What dlcli tells a process it starts itself, and only such a process.

`dlcli sweep` starts each trial (and a spare process per slot) and a multi-process run's
parent starts its supervised worker. They used to tell the child its part through
environment variables, which a stray variable in a user's shell could set as well: every
`dlcli` command then waited on stdin, noted into a file it named, or ended itself. Now the
child is started as `python -m dlcli.cli.child HANDOFF ARGV...` (`child_command`), where HANDOFF
is this dataclass as JSON; `dlcli.cli.child` checks it and sets `current` before running
`dlcli ARGV`. Any other process keeps `current`'s defaults: nothing handed off.

Imports nothing of dlcli's but the standard library: the signal and process code that reads
`current` is loaded by `--help` too.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields

MODULE = "dlcli.cli.child"


@dataclass(frozen=True)
class Handoff:
    """A started process's part.

    Attributes:
        note: a file where the process notes how far it got (`dlcli.training.distributed.note`).
        parent: the pid of the `dlcli sweep` that started it; the process ends when that
            one dies (`dlcli.training.signals.follow_parent`).
        worker: it is a multi-process run's supervised worker: it trains, rather than
            supervising a worker of its own.
        preload: a sweep's spare: `BACKEND:DETERMINISTIC` to start before its arguments come
            on stdin (`dlcli.tuning.sweep.await_trial`).
        mlflow_parent: the MLflow run of the sweep or cv that started it: the run it logs
            is nested under that one (`dlcli.training.track`).
    """

    note: str | None = None
    parent: int | None = None
    worker: bool = False
    preload: str | None = None
    mlflow_parent: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Handoff:
        """The hand-off `to_json` wrote; ValueError for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) - {f.name for f in fields(cls)}:
            raise ValueError("not a hand-off object")
        handoff = cls(**data)
        checks = {
            "note": handoff.note is None or (isinstance(handoff.note, str) and handoff.note != ""),
            "parent": handoff.parent is None
            or (type(handoff.parent) is int and handoff.parent > 0),
            "worker": isinstance(handoff.worker, bool),
            "preload": handoff.preload is None or isinstance(handoff.preload, str),
            "mlflow_parent": handoff.mlflow_parent is None
            or (isinstance(handoff.mlflow_parent, str) and handoff.mlflow_parent.isalnum()),
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError(f"bad {', '.join(wrong)}")
        return handoff


current = Handoff()  # this process's: set by dlcli.cli.child alone


def child_command(handoff: Handoff, argv: list[str]) -> list[str]:
    """The command line of a process that runs `dlcli ARGV` with `handoff` as its part."""
    return [sys.executable, "-m", MODULE, handoff.to_json(), *argv]


__all__ = ["Handoff", "child_command", "current"]
