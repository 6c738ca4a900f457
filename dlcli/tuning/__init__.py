"""Stage 8, tuning: `dlcli sweep`, many runs of one config searched with Optuna.

- `sweep`: the study, its trials as `dlcli train` child processes, sweep.json.
- `sqlite_lock`: a study database another process keeps locked.

Imports the stages before it; never `cli`.
"""
