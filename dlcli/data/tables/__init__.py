"""Tables: CSV and Parquet files with named, typed columns, as real files come (no header,
text categories, `?` for a missing cell, `;` between cells, `\\r` line ends).

- `tablefile`: the form of a file (delimiter, header, names) and reading it whole into one
  float32 matrix, with every problem at its `file:line`.
- `stream`: the same file walked a piece at a time (`data.streaming`).
- `preprocessing`: what is fitted on the training split (statistics, vocabularies), applied to
  every file a run reads after, and kept in preprocessing.json.
- `encoder`: the Keras layer a table model starts with (the numeric part of that preprocessing).

Imports the basics and `data.sources.base` / `data.sources.datafile`; Keras only in `encoder`.
"""
