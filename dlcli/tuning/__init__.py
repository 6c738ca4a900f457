"""Stage 8, tuning: `dlcli sweep`, many runs of one config searched with Optuna.

- `sweep`: the command (`run_sweep`) and its loop (`Sweeper`): ask, launch, follow, prune, tell.
- `preflight`: the checks before any trial: the space's values against the schema and Keras,
  the target metric and its direction (`Target`).
- `study`: the Optuna study: its storage, sampler and pruner, and what the sweep asks of it.
- `trials`: each trial as a `dlcli train` child process, the slots' cores and spare processes.
- `record`: sweep.json as typed records (`SweepRecord`, `TrialRow`, `Best`).
- `figures`: best.yaml, history.png and importance.png.
- `sqlite_lock`: a study database another process keeps locked.

The kinds of a search space (`choice`, `uniform`, ...) are `dlcli.config.space`'s.
Imports the stages before it; never `cli`.
"""
