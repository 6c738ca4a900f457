"""One dlcli run's MLflow run, logged off the training thread and never at the run's cost.

A `Tracker` starts a worker process (`dlcli.tracking.worker`) that makes every MLflow call
through MLflow's own client, one after another, in the order they were asked for; the caller
only writes the requests to its stdin. A thread reads what the worker says (the run's ids,
each failure). Each HTTP request is bounded in the worker, and `close` waits for the queue
at most `CLOSE_WAIT_S`, then ends the worker: a server that is down, refuses the login,
fills up or accepts connections and never answers costs at most that, once. The first
failure is one warning line on stderr and `error` (what run.json records).

What a run logs: the resolved config as parameters with dotted keys
(`compile.optimizer.learning_rate`), tags (`dlcli.*`), every history row with `step` = the
epoch, the final `train_*` / `test_*` metrics, the run folder's files as artifacts, and the
status (FINISHED, FAILED or KILLED). A resumed run reopens its MLflow run and logs only the
epochs after the last one there, so no step appears twice.

Example:
    >>> tracker = Tracker(target, warn=print)
    >>> tracker.open(params={"training.epochs": 20}, tags={"dlcli.run_id": "digits-..."})
    >>> tracker.epoch({"epoch": 1, "loss": 0.52, "val_loss": 0.31})
    >>> tracker.finish("completed", artifact_files(run_folder))
    >>> tracker.close()
    {'tracking_uri': 'http://127.0.0.1:5000', 'experiment': 'digits', ...}
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from dlcli.tracking.where import Target

CLOSE_WAIT_S = 30.0  # the most a run waits, at its end, for what is still queued
FLUSH_S = 1.0  # history rows are sent together at most this often
STATUSES = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
ARTIFACTS = (
    "config.yaml",
    "metrics.json",
    "history.csv",
    "run.json",
    "labels.json",
    "preprocessing.json",
    "summary.txt",
    "confusion_matrix.csv",
    "model.keras",
)


class Tracker:
    """A dlcli run's MLflow run (`run_id`: an existing one to continue; `parent_id`: the run
    it is nested under). `warn(line)` prints the one warning line."""

    def __init__(
        self,
        target: Target,
        run_id: str | None = None,
        parent_id: str | None = None,
        warn: Callable[[str], None] | None = None,
    ):
        self.target = target
        self.run_id = run_id
        self.parent_id = parent_id
        self.experiment_id: str | None = None
        self.error: str | None = None
        self._warn = warn
        self._opened = threading.Event()  # set once the worker has opened the run (or failed)
        self._rows: list[dict] = []  # history rows not yet sent
        self._flushed = time.monotonic()
        self._worker = _started.pop() if _started else _start_worker()
        self._reader = threading.Thread(target=self._read, name="dlcli-mlflow", daemon=True)
        self._reader.start()
        self._send(
            {
                "uri": target.uri,
                "experiment": target.experiment,
                "artifacts": target.artifacts,
                "run_id": run_id,
                "parent_id": parent_id,
            }
        )

    # -- what the training thread asks for (written to the worker, never waited on) -----

    def open(self, params: dict, tags: dict) -> None:
        """Create the MLflow run (or reopen `run_id`) with these parameters and tags."""
        self._call("open", params, tags)

    def epoch(self, row: dict) -> None:
        """One history row: each number at `step` = its epoch. Rows go to the worker at
        most every `FLUSH_S` seconds, together: one request for many short epochs."""
        self._rows.append(dict(row))
        if time.monotonic() - self._flushed >= FLUSH_S:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._call("epochs", self._rows)
            self._rows = []
        self._flushed = time.monotonic()

    def metrics(self, values: dict, step: int = 0) -> None:
        """Metrics by name at one step (the final scores, an evaluation's)."""
        self._call("metrics", dict(values), step)

    def finish(
        self, status: str, files: Iterable[Path] = (), final: dict | None = None, step: int = 0
    ) -> None:
        """The final metrics (at `step`, the last epoch), the files and the MLflow status
        for dlcli's `status` (completed, failed or interrupted)."""
        self._flush()
        if final:
            self.metrics(final, step)
        self._call("artifacts", [str(f) for f in files])
        self._call("terminate", STATUSES.get(status, "FAILED"))

    def wait_opened(self, wait: float) -> str | None:
        """Wait (at most `wait` seconds) until the MLflow run exists or could not be made;
        its id, or None."""
        self._opened.wait(wait)
        return self.run_id

    def close(self, wait: float = CLOSE_WAIT_S) -> dict:
        """Wait (at most `wait` seconds) for the queued calls; what run.json records."""
        with contextlib.suppress(OSError):
            self._worker.stdin.close()
        try:
            self._worker.wait(wait)
        except subprocess.TimeoutExpired:
            self._worker.kill()
            self._worker.wait()
            self._fail(
                f"the tracking server did not finish within {wait:.0f} s; what it lacks is in "
                "the run folder"
            )
        self._reader.join(5)
        return self.record()

    def record(self) -> dict:
        """`{tracking_uri (masked), experiment, experiment_id, run_id[, error]}`."""
        out = {
            "tracking_uri": self.target.shown,
            "experiment": self.target.experiment,
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
        }
        if self.parent_id:
            out["parent_run_id"] = self.parent_id
        if self.error:
            out["error"] = self.error
        return out

    # -- talking to the worker ---------------------------------------------------------

    def _call(self, call: str, *args) -> None:
        self._send({"call": call, "args": list(args)})

    def _send(self, message: dict) -> None:
        try:
            self._worker.stdin.write(json.dumps(message, default=str) + "\n")
            self._worker.stdin.flush()
        except (OSError, ValueError):  # the worker is gone: its end says why
            pass

    def _read(self) -> None:
        done = False
        for line in self._worker.stdout:
            try:
                said = json.loads(line)
            except ValueError:
                continue
            if said.get("run_id"):
                self.run_id, self.experiment_id = said["run_id"], said.get("experiment_id")
            if said.get("error"):
                self._fail(said["error"])
            if said.get("opened"):
                self._opened.set()
            done = done or bool(said.get("done"))
        code = self._worker.wait()
        if not done and code not in (0, -9):
            self._fail(f"the tracking process ended unexpectedly (exit code {code})")
        self._opened.set()

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            if self._warn is not None:
                self._warn(
                    f"warning: MLflow tracking at {self.target.shown} failed: {reason}; "
                    "the run goes on (run.json records it)"
                )


_started: list[subprocess.Popen] = []  # a worker started ahead (`prestart`), not yet taken


def _start_worker() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dlcli.tracking.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the worker reports on stdout; MLflow's chatter stays out
        text=True,
        start_new_session=True,  # Ctrl-C is the run's: the worker still logs KILLED
    )


def prestart() -> None:
    """Start the next `Tracker`'s worker now: it imports MLflow on another core while this
    process imports Keras and loads the data. A worker never taken ends with this process
    (its stdin closes)."""
    if not _started:
        _started.append(_start_worker())


def artifact_files(folder: Path, names: Iterable[str] = ARTIFACTS) -> list[Path]:
    """The files of `names` a folder holds, then its pictures."""
    found = [folder / name for name in names if (folder / name).is_file()]
    return found + sorted(p for p in folder.glob("*.png") if p.is_file())


def flat(value, prefix: str = "") -> dict:
    """A nested config as dotted keys: `{"compile": {"optimizer": {"type": "adam"}}}` ->
    `{"compile.optimizer.type": "adam"}`; list items by index (`model.layers.0.units`)."""
    if isinstance(value, dict):
        out: dict = {}
        for key, item in value.items():
            out.update(flat(item, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: "{}"}
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flat(item, f"{prefix}{index}."))
        return out
    return {prefix[:-1]: value}


__all__ = [
    "ARTIFACTS",
    "CLOSE_WAIT_S",
    "STATUSES",
    "Tracker",
    "artifact_files",
    "flat",
    "prestart",
]
