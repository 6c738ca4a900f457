"""The process that talks to MLflow for a `dlcli.tracking.tracker.Tracker`.

`python -m dlcli.tracking.worker` reads one JSON request a line on stdin and makes each
call through MLflow's own client (`MlflowClient`), in order; it writes what the parent needs
to know as JSON lines on stdout: `{"run_id", "experiment_id"}` once the run exists,
`{"opened": true}` once opening is done (or failed), `{"error", "unreachable"}` for each
failure. It ends at the end of stdin, once its queue is done.

A process of its own, not a thread: importing MLflow (pandas, SQLAlchemy, OpenTelemetry)
takes seconds of CPU, which another core pays here rather than the training thread's GIL.
Each HTTP request is bounded (`REQUEST_TIMEOUT_S`, `RETRIES`). After a failure that says the
server cannot be reached, or when the run could not be made, the rest is skipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time

REQUEST_TIMEOUT_S = 5  # one HTTP request to a tracking server
RETRIES = 1  # MLflow's client retries a failed request this many times
BATCH = 100  # parameters (and tags) per log_batch: MLflow's limit
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


class Calls:
    """The MLflow calls of one run, in the worker process; `say(dict)` tells the parent."""

    def __init__(self, uri: str, experiment: str, artifacts: str | None, run_id, parent_id, say):
        self.uri, self.experiment, self.artifacts = uri, experiment, artifacts
        self.run_id, self.parent_id, self.say = run_id, parent_id, say
        self.logged_step = 0  # the last epoch already in the MLflow run
        self.failed = self.unreachable = False
        self._client = None

    @property
    def client(self):
        if self._client is None:
            for name, value in (
                ("MLFLOW_HTTP_REQUEST_TIMEOUT", REQUEST_TIMEOUT_S),
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", RETRIES),
                ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 1),
                ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"),
            ):
                os.environ.setdefault(name, str(value))
            import logging

            from mlflow.tracking import MlflowClient

            for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..."
                logging.getLogger(name).setLevel(logging.WARNING)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def handle(self, call: str, args: list) -> None:
        if self.unreachable or (self.failed and self.run_id is None):
            if call == "open":
                self.say({"opened": True})
            return  # nothing can be sent, or there is no run to send it to
        try:
            getattr(self, f"do_{call}")(*args)
        except Exception as exc:  # noqa: BLE001 - tracking never ends the run
            self.fail(exc)
            if self.run_id is None:
                self.unreachable = True
        finally:
            if call == "open":
                self.say({"opened": True})

    def fail(self, exc: BaseException, prefix: str = "") -> None:
        self.failed = True
        self.unreachable = self.unreachable or is_unreachable(exc)
        self.say({"error": prefix + reason(exc), "unreachable": self.unreachable})

    def do_open(self, params: dict, tags: dict) -> None:
        client = self.client
        if self.run_id is not None:
            run = client.get_run(self.run_id)
            client.update_run(self.run_id, status="RUNNING")
            steps = [m.step for m in client.get_metric_history(self.run_id, "loss")]
            self.logged_step = max(steps, default=0)
            self.say({"run_id": self.run_id, "experiment_id": run.info.experiment_id})
            known = run.data.params
            self.batches(params={k: v for k, v in params.items() if k not in known}, tags=tags)
            return
        experiment_id = self.experiment_id(client)
        if self.parent_id:
            tags = {**tags, "mlflow.parentRunId": self.parent_id}
        run = client.create_run(
            experiment_id,
            tags={k: text(v) for k, v in tags.items()},
            run_name=tags.get("dlcli.run_id"),
        )
        self.run_id = run.info.run_id
        self.say({"run_id": self.run_id, "experiment_id": experiment_id})
        self.batches(params=params)

    def experiment_id(self, client) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(self.experiment, artifact_location=self.artifacts)
        except Exception:  # another process created it meanwhile
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def batches(self, params: dict | None = None, tags: dict | None = None) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, text(v)) for k, v in (params or {}).items()]
        tags = [RunTag(k, text(v)) for k, v in (tags or {}).items()]
        for start in range(0, max(len(params), len(tags)), BATCH):
            self.client.log_batch(
                self.run_id, params=params[start : start + BATCH], tags=tags[start : start + BATCH]
            )

    def do_epochs(self, rows: list[dict]) -> None:
        """History rows, each number at `step` = its epoch; the epochs the MLflow run holds
        already (a resume continues it) are left out."""
        new = [r for r in rows if int(r.get("epoch", 0)) > self.logged_step]
        if new:
            self.log(
                [
                    (key, value, int(row["epoch"]))
                    for row in new
                    for key, value in row.items()
                    if key != "epoch"
                ]
            )
            self.logged_step = max(int(r["epoch"]) for r in new)

    def do_metrics(self, values: dict, step: int) -> None:
        self.log([(key, value, step) for key, value in values.items()])

    def log(self, points: list[tuple]) -> None:
        """(name, value, step) points in batches of MLflow's 1,000; non-finite ones left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, step)
            for key, value, step in points
            if isinstance(value, (int, float)) and math.isfinite(float(value))
        ]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def do_artifacts(self, files: list[str]) -> None:
        for path in files:
            try:
                self.client.log_artifact(self.run_id, path)
            except Exception as exc:  # a full store: the other files still go
                if is_unreachable(exc):
                    raise
                self.fail(exc, prefix=f"{os.path.basename(path)}: ")

    def do_terminate(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def text(value) -> str:
    shown = "None" if value is None else str(value)
    return shown if len(shown) <= 6000 else shown[:5997] + "..."


def reason(exc: BaseException) -> str:
    """What went wrong, in a phrase: the server's silence, a refused connection or login,
    else MLflow's own message (shortened)."""
    said = " ".join(str(exc).split()) or type(exc).__name__
    lower = said.lower()
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
    return said if len(said) <= 300 else said[:297] + "..."


def is_unreachable(exc: BaseException) -> bool:
    said = f"{type(exc).__name__} {exc}".lower()
    return any(word in said for word in UNREACHABLE)


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything MLflow prints stays off the protocol

    def say(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # the training comes first: this process takes the cores it leaves idle
    from mlflow.tracking import MlflowClient  # noqa: F401 - imported while the run starts

    setup = json.loads(sys.stdin.readline() or "{}")
    calls = Calls(
        setup.get("uri", ""),
        setup.get("experiment", ""),
        setup.get("artifacts"),
        setup.get("run_id"),
        setup.get("parent_id"),
        say,
    )
    for line in sys.stdin:
        request = json.loads(line)
        calls.handle(request["call"], request.get("args", []))
    say({"done": True})


if __name__ == "__main__":
    main()
