"""Stage 1, the config: a YAML file (or a dict) read safely, overrides applied, checked
against the schema, every problem located at its `file:line`.

- `text`: reading YAML safely (no tags, bounded size and expansion), `--set` overrides, the
  differences between two configs.
- `schema`: the sections (`Config`, `TrainingConfig`, ...) as pydantic models, and the JSON
  Schema; `data_section` is the `data:` section (`DataConfig`) and `fields` the value types
  they are built from (`Section`, `KerasObject`, strict numbers).
- `sources`: the names `data.source` takes, by kind; plain tuples, no pydantic (a served run
  reads its kind from them without loading the schema).
- `load`: `load_config`, which turns pydantic's errors into `Problem`s at their lines.
- `space`: the kinds of a sweep's search space (`choice`, `uniform`, ...), one class each.

Imports only `dlcli.errors` and `dlcli.files` of dlcli's: no Keras, no data, no stage after it.
"""
