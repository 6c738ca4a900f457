"""Tracking: each run mirrored into MLflow, off the training thread, never at the run's cost.

- `tracker`: `Tracker`, one dlcli run's MLflow run, logged by a worker process (parameters,
  tags, a metric row per epoch, the final metrics, the run folder's files, the status), every
  call bounded in time; the first failure is one warning line and the error in run.json.
- `where`: which tracking URI and experiment a config means (`output.mlflow`,
  `MLFLOW_TRACKING_URI`, the SQLite store in the runs dir) and the URI with its password
  masked, as run.json and `dlcli env` show it.

- `worker`: that process: MLflow's own client (the `[mlflow]` extra) makes every call, so
  MLflow is imported there, never in dlcli's process, and a run that tracks nothing never
  imports it.
"""
