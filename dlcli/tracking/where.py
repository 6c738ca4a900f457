"""Which MLflow store and experiment a run is tracked in, and that store's URI as dlcli shows it.

The tracking URI is, first to last: `output.mlflow.tracking_uri`, `MLFLOW_TRACKING_URI`, and
otherwise an SQLite file in the runs dir (`sqlite:///<runs dir>/mlflow.db`), which
`mlflow ui --backend-store-uri` opens. The experiment is `output.mlflow.experiment`, else
the run's name. A password in a URI (`http://user:secret@host`, `postgresql://user:secret@...`)
is shown as `***` wherever dlcli writes or prints the URI.

Example:
    >>> masked("postgresql://ml:s3cret@127.0.0.1:5432/runs")
    'postgresql://ml:***@127.0.0.1:5432/runs'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DB_NAME = "mlflow.db"
ARTIFACTS = "mlflow-artifacts"  # beside mlflow.db: a local store's files stay in the runs dir


@dataclass(frozen=True)
class Target:
    """Where one run goes: the tracking URI, where it came from, the experiment's name, and
    for a local store the folder its artifacts go to (None: the server decides)."""

    uri: str
    origin: str  # "config" | "MLFLOW_TRACKING_URI" | "default"
    experiment: str
    artifacts: str | None = None

    @property
    def shown(self) -> str:
        return masked(self.uri)

    def continued(self, before: dict | None) -> str | None:
        """The MLflow run id a record (run.json's, sweep.json's or cv.json's `mlflow`) names
        when it is in this store: the run to continue; None for a new one."""
        before = before or {}
        return before.get("run_id") if before.get("tracking_uri") == self.shown else None


def tracking_uri(configured: str | None, runs_dir: str | os.PathLike) -> tuple[str, str]:
    """(URI, where it came from) for a configured URI (or None) and the runs dir."""
    if configured:
        return configured, "config"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI"
    return f"sqlite:///{Path(runs_dir).resolve() / DB_NAME}", "default"


def target(mlflow, run_name: str, runs_dir: str | os.PathLike) -> Target | None:
    """The `Target` of a config's `output.mlflow` (False, True or its settings); None when it
    tracks nothing."""
    if mlflow is False or mlflow is None:
        return None
    settings = {} if mlflow is True else mlflow
    configured = getattr(settings, "tracking_uri", None)
    uri, origin = tracking_uri(configured, runs_dir)
    experiment = getattr(settings, "experiment", None) or run_name
    return Target(uri, origin, experiment, local_artifacts(uri, runs_dir))


DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # stores MLflow's client writes itself


def local_artifacts(uri: str, runs_dir: str | os.PathLike) -> str | None:
    """For a store the client writes itself (a database, not a server), where a new
    experiment's files go, as a `file://` URI: beside an SQLite file, else in the runs dir's
    `mlflow-artifacts/`. MLflow would otherwise put them in the working directory's
    `mlruns/`. None for a server, which decides."""
    parts = urlsplit(uri)
    if parts.scheme.split("+")[0] not in DATABASES:
        return None
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        return (Path(parts.path).parent / ARTIFACTS).resolve().as_uri()
    return (Path(runs_dir) / ARTIFACTS).resolve().as_uri()


def masked(uri: str) -> str:
    """`uri` with the password of its user part as `***`."""
    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:  # not a URL that urllib parses: show nothing of it past the scheme
        return uri.split(":", 1)[0] + ":***"


def masked_words(line: str) -> str:
    """A command line with the password of every URI in it masked."""
    return re.sub(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+", lambda m: masked(m.group(0)), line)


__all__ = ["Target", "local_artifacts", "masked", "masked_words", "target", "tracking_uri"]
