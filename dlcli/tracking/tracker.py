"""One dlcli run's MLflow run, logged off the training thread and never at the run's cost.

A `Tracker` owns a worker thread that makes every MLflow call through MLflow's own client
(`MlflowClient`), one after another, in the order they were asked for; the caller only
queues them. Each HTTP request is bounded (`REQUEST_TIMEOUT_S`, `RETRIES`), and `close`
waits for what is queued at most `CLOSE_WAIT_S`, so a server that is down, refuses the
login, fills up or accepts connections and never answers costs at most that, once. The first
failure is one warning line on stderr and `error` (what run.json records); after a failure
that says the server cannot be reached, nothing more is sent; after any other (a full
artifact store, a refused value), the rest is still tried.

What a run logs: the resolved config as parameters with dotted keys
(`compile.optimizer.learning_rate`), tags (`dlcli.*`), every history row with `step` = the
epoch, the final `train_*` / `val_*` / `test_*` metrics, the run folder's files as
artifacts, and the status (FINISHED, FAILED or KILLED). A resumed run reopens its MLflow run
and logs only the epochs after the last one there, so no step appears twice.

Example:
    >>> tracker = Tracker(target, warn=print)
    >>> tracker.open(params={"training.epochs": 20}, tags={"dlcli.run_id": "digits-..."})
    >>> tracker.epoch({"epoch": 1, "loss": 0.52, "val_loss": 0.31})
    >>> tracker.finish("completed", artifact_files(run_folder))
    >>> tracker.close()
    {'tracking_uri': 'http://127.0.0.1:5000', 'experiment': 'digits', ...}
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from dlcli.tracking.where import Target

REQUEST_TIMEOUT_S = 5  # one HTTP request to a tracking server
RETRIES = 1  # MLflow's client retries a failed request this many times
CLOSE_WAIT_S = 30.0  # the most a run waits, at its end, for what is still queued
BATCH = 100  # parameters (and tags) per log_batch: MLflow's limit
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
UNREACHABLE = (
    "connection refused",
    "connectionerror",
    "max retries exceeded",
    "timed out",
    "timeout",
    "name or service not known",
    "failed to establish",
    "remote end closed",
    "connection reset",
    "could not connect",
    "unable to open database",
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
        self.unreachable = False
        self.logged_step = 0  # the last epoch already in the MLflow run
        self._warn = warn
        self._client = None
        self._jobs: queue.Queue = queue.Queue()
        self._opened = threading.Event()  # set once `open` has run (or failed)
        self._worker = threading.Thread(target=self._work, name="dlcli-mlflow", daemon=True)
        self._worker.start()

    # -- what the training thread asks for (queued, never waited on) --------------------

    def open(self, params: dict, tags: dict) -> None:
        """Create the MLflow run (or reopen `run_id`) with these parameters and tags."""
        self._jobs.put((self._open, (params, tags), True))

    def epoch(self, row: dict) -> None:
        """One history row: each number at `step` = its epoch."""
        self._jobs.put((self._epoch, (dict(row),), False))

    def metrics(self, values: dict, step: int = 0) -> None:
        """Metrics by name at one step (the final scores, an evaluation's)."""
        self._jobs.put((self._metrics, (dict(values), step), False))

    def finish(
        self, status: str, files: Iterable[Path] = (), final: dict | None = None, step: int = 0
    ) -> None:
        """The final metrics (at `step`, the last epoch), the files and the MLflow status
        for dlcli's `status` (completed, failed or interrupted)."""
        if final:
            self.metrics(final, step)
        self._jobs.put((self._artifacts, (list(files),), False))
        self._jobs.put((self._terminate, (STATUSES.get(status, "FAILED"),), True))

    def wait_opened(self, wait: float) -> str | None:
        """Wait (at most `wait` seconds) until the MLflow run exists or could not be made;
        its id, or None."""
        self._opened.wait(wait)
        return self.run_id

    def close(self, wait: float = CLOSE_WAIT_S) -> dict:
        """Wait (at most `wait` seconds) for the queued calls; what run.json records."""
        self._jobs.put(None)
        self._worker.join(wait)
        if self._worker.is_alive():
            self._fail(
                f"the tracking server did not finish within {wait:.0f} s; what it lacks is in "
                "the run folder"
            )
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

    # -- the worker --------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, args, essential = job
            if self.unreachable or (self.error is not None and self.run_id is None):
                continue  # nothing can be sent, or there is no run to send it to
            try:
                call(*args)
            except Exception as exc:  # noqa: BLE001 - tracking never ends the run
                self._fail(_reason(exc))
                self.unreachable = self.unreachable or _is_unreachable(exc)
                if essential and self.run_id is None:
                    self.unreachable = True
            finally:
                if call == self._open:
                    self._opened.set()
        self._opened.set()

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            if self._warn is not None:
                self._warn(
                    f"warning: MLflow tracking at {self.target.shown} failed: {reason}; "
                    "the run goes on (run.json records it)"
                )

    @property
    def client(self):
        if self._client is None:
            for name, value in (
                ("MLFLOW_HTTP_REQUEST_TIMEOUT", REQUEST_TIMEOUT_S),
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", RETRIES),
                ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 1),
                ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"),  # stdout is `--json`'s
            ):
                os.environ.setdefault(name, str(value))
            import logging

            from mlflow.tracking import MlflowClient

            for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..."
                logging.getLogger(name).setLevel(logging.WARNING)

            self._client = MlflowClient(tracking_uri=self.target.uri)
        return self._client

    def _open(self, params: dict, tags: dict) -> None:
        client = self.client
        if self.run_id is not None:
            run = client.get_run(self.run_id)
            self.experiment_id = run.info.experiment_id
            client.update_run(self.run_id, status="RUNNING")
            steps = [m.step for m in client.get_metric_history(self.run_id, "loss")]
            self.logged_step = max(steps, default=0)
            known = run.data.params
            self._batches(params={k: v for k, v in params.items() if k not in known}, tags=tags)
            return
        self.experiment_id = self._experiment(client)
        if self.parent_id:
            tags = {**tags, "mlflow.parentRunId": self.parent_id}
        run = client.create_run(
            self.experiment_id,
            tags={k: _text(v) for k, v in tags.items()},
            run_name=tags.get("dlcli.run_id"),
        )
        self.run_id = run.info.run_id
        self._batches(params=params)

    def _experiment(self, client) -> str:
        name = self.target.experiment
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name, artifact_location=self.target.artifacts)
        except Exception:  # another process created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _batches(self, params: dict | None = None, tags: dict | None = None) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, _text(v)) for k, v in (params or {}).items()]
        tags = [RunTag(k, _text(v)) for k, v in (tags or {}).items()]
        for start in range(0, max(len(params), len(tags)), BATCH):
            self.client.log_batch(
                self.run_id,
                params=params[start : start + BATCH],
                tags=tags[start : start + BATCH],
                synchronous=True,
            )

    def _epoch(self, row: dict) -> None:
        step = int(row.get("epoch", 0))
        if step <= self.logged_step:
            return  # in the MLflow run already (a resume continues it)
        self._metrics({k: v for k, v in row.items() if k != "epoch"}, step)
        self.logged_step = step

    def _metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, step)
            for key, value in values.items()
            if isinstance(value, (int, float)) and math.isfinite(float(value))
        ]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def _artifacts(self, files: list[Path]) -> None:
        for path in files:
            try:
                self.client.log_artifact(self.run_id, str(path))
            except Exception as exc:  # a full store: the other files still go
                if _is_unreachable(exc):
                    raise
                self._fail(f"{path.name}: {_reason(exc)}")

    def _terminate(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


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


def _text(value) -> str:
    text = "None" if value is None else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _reason(exc: BaseException) -> str:
    """What went wrong, in a phrase: the server's silence, a refused connection or login,
    else MLflow's own message (shortened)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    lower = text.lower()
    if "readtimeout" in lower or "read timed out" in lower:
        return f"the server did not answer within {REQUEST_TIMEOUT_S} s"
    if "connection refused" in lower or "newconnectionerror" in lower:
        return "cannot connect (connection refused); is the server running?"
    for code, meaning in (("401", "refused the login"), ("403", "refused access")):
        if f"error code {code}" in lower or f"status code {code}" in lower:
            return (
                f"the server {meaning} (HTTP {code}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
            )
    return text if len(text) <= 300 else text[:297] + "..."


def _is_unreachable(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in UNREACHABLE)


__all__ = ["ARTIFACTS", "Tracker", "artifact_files", "flat"]
