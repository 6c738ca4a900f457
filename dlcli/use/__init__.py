"""Stage 7, using a finished run: evaluate it, predict with it, export it.

- `evaluate`: loading a run's model safely, scoring a split or a file, `predict`.
- `export`: deployable copies (SavedModel, ONNX, LiteRT, keras), each checked against the model;
  `export_formats`: how each format is written and loaded back.
- `export_safety`: which folders an export may replace (only its own).

Imports the stages before it; never `tuning` or `cli`.
"""
