"""Stage 6, training: a config's run from start to finish, in a run folder.

- `prepare`: a config validated, its data loaded, its model built (all of `dlcli validate`).
- `session`: `train`, the steps of a run top to bottom.
- `callbacks`: the history, progress, checkpoint and TensorBoard callbacks.
- `checkpoint`, `resume`: what `--resume` needs and its rules.
- `signals`: Ctrl-C / SIGTERM ending a run cleanly.
- `progress`: one line per epoch, or a rich bar.
- `distributed`: several processes training one run (JAX's distributed runtime).
- `handoff`: what a process dlcli starts itself is told.

The package is `training`, not `train`: `dlcli.train` is the public function.
Imports the stages before it; never `use`, `tuning` or `cli`.
"""
