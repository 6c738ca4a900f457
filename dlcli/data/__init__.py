"""Stage 4, the data: a config's source turned into seeded train / validation / test splits.

- `sources/`: one module per kind of source (scikit-learn's bundled sets, Keras datasets, NPZ
  arrays, tables), and `SOURCES`, the table that names them.
- `tables/`: table files (CSV and Parquet) read whole or a piece at a time, and the
  preprocessing fitted on the training split.
- `dataset`: `load_data`, the splits (`Split`), the task and the labels.
- `streaming`: splits whose samples stay in their file (`StreamSplit`).
- `inputs`: the files a finished run reads (`predict`'s features, `evaluate --data`'s rows).

Knows nothing of models or training: imports the config and runtime stages and the basics.
"""
