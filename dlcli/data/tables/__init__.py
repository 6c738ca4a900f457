"""Tables: CSV and Parquet files with named, typed columns, as real files come (no header,
text categories, `?` for a missing cell, `;` between cells, `\\r` line ends).

One home around one object, `TableFile` (a file's path, its form, its missing markers);
modules in the order they import each other:

- `parquet`: a Parquet file's handle, columns and row groups. `arrow`: pyarrow columns as
  numpy (numbers; text as distinct cells and codes).
- `form`: a file's form from its first megabyte (`TableFormat`, `inspect`: delimiter, header,
  names, decimal mark, line ends, leading lines skipped; a compressed file, and a count line
  that is neither header nor data (`LeadLine`), refused).
- `diagnostics`: line numbers, by walking a CSV with Python's csv on the way to an error.
- `pieces`: the one CSV reader: a file cut into pieces of `PIECE` bytes at line ends outside
  quotes (`spans`), a piece parsed by pyarrow (`read_piece`), the one `releaser`.
- `tablefile`: `TableFile`, whose methods are all of the above for one file.
- `plan`: what a column's cells become (`ColumnPlan`), decided over the whole file; the
  kinds of column (`ColumnKind`: numeric, categorical; the seam for the next ones).
- `columns`: what a read gives (`TableColumns`), the target, float32 range, data.on_missing.
- `whole` (`read_table`: one float32 matrix) and `stream` (`scan`, `TableRows`:
  `data.streaming`, a piece at a time): two strategies over the same pieces and plans.
- `preprocessing`: what is fitted on the training split (statistics, vocabularies), applied to
  every file a run reads after, and kept in preprocessing.json.
- `encoder`: the Keras layer a table model starts with (the numeric part of that preprocessing).

Imports the basics and `data.sources.base` / `data.sources.datafile`; pyarrow inside the
functions that read; Keras only in `encoder`.
"""
