"""Stage 1, the config: a YAML file (or a dict) read safely, overrides applied, checked
against the schema, every problem located at its `file:line`.

- `text`: reading YAML safely (no tags, bounded size and expansion), `--set` overrides, the
  differences between two configs.
- `schema`: the sections (`Config`, `DataConfig`, ...) as pydantic models, and the JSON Schema.
- `load`: `load_config`, which turns pydantic's errors into `Problem`s at their lines.
- `space`: the kinds of a sweep's search space (`choice`, `uniform`, ...), one class each.

Imports only `dlcli.errors` and `dlcli.files` of dlcli's: no Keras, no data, no stage after it.
"""
