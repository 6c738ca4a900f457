"""Stage 3, the run folder: the store every later stage writes through and reads back.

- `runfolder`: `RunFolder` (safe paths inside one folder, atomic JSON, history rows, the
  lock), finding a run by path, id or `latest`.
- `record`: `RunRecord`, run.json as a typed record, read and written in one place.
- `metrics`: which way a metric is better.
- `catalog`: what `runs`, `show` and `compare` read.
- `plots`, `board`, `reports`: curves.png, TensorBoard scalars, the confusion matrix.

It sits before data and training because they write into it; it knows nothing of them:
imports the config stage (its YAML reading) and the basics only, and never Keras.
"""
