"""Starter configs for `dlcli init`: the commented YAML files in `dlcli/templates/`, or
one fitted to a table file (`dlcli init --from-data FILE`).

A template's first comment line is its description (`dlcli init --list`). Writing one never
overwrites a file unless asked. Imports neither Keras nor the schema: `init` is instant.

`from_data` reads a CSV or Parquet file with the same reader `train` uses
(`dlcli.data.tables.tablefile`, imported only then; never Keras) and writes a config for it: its
form (header, delimiter), one commented line per feature column (type, categories or range,
missing cells), the target with its classes or range, and a model, loss and metrics that fit
the task. It validates and trains as written.

Example:
    >>> write_template("experiments/", "csv")
    PosixPath('experiments/config.yaml')
    >>> write_from_data("census.csv", target="-1")[0]
    PosixPath('census.yaml')
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.files import write_output


def _templates_dir():
    return resources.files("dlcli.init") / "configs"


def templates() -> dict[str, str]:
    """Template name -> its one-line description (the first comment line of the file)."""
    out = {}
    for entry in sorted(_templates_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            first = next((line for line in entry.read_text(encoding="utf-8").splitlines() if line.strip()), "")
            out[entry.name[: -len(".yaml")]] = first.lstrip("#").strip()
    return out


def template_text(name: str) -> str:
    """The commented YAML of a template; a ConfigError naming the templates if unknown."""
    names = templates()
    if name not in names:
        raise ConfigError(Problem(
            f"no template '{name}'{did_you_mean(name, names)}; choose one of: {', '.join(names)}",
            where="--template",
        ))
    return (_templates_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def write_template(path: str | os.PathLike = "config.yaml", name: str = "mlp", force: bool = False) -> Path:
    """Write template `name` to `path` (a folder gets `config.yaml` inside); return the file.

    Refuses (ConfigError, exit 2) to overwrite an existing file unless `force`.
    """
    text = template_text(name)
    target = _destination(path, "config.yaml", force)
    _write(target, text)
    return target


def _destination(path: str | os.PathLike, default_name: str, force: bool) -> Path:
    """The file to write: `path`, or `default_name` inside it when it is a folder; a
    ConfigError when it exists and `force` is not given."""
    target = Path(path)
    if target.is_dir() or str(path).endswith(("/", os.sep)):
        target = target / default_name
    if target.exists() and not force:
        raise ConfigError(Problem("already exists; pass --force to overwrite it, or choose another PATH", where=str(target)))
    return target


def _write(target: Path, text: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot write it: {exc.strerror or exc}", where=str(target))) from None
    write_output(target, text)


# ---------------------------------------------------------------- a config fitted to a table file

BIG_FILE_ROWS = 10_000  # rows from which batches of 64 train faster than 32, at no cost in accuracy
SHOWN_CATEGORIES = 5  # categories named in a column's comment, most common first
SHOWN_CLASSES = 10
ID_SHARE = 0.5  # a text column with more distinct values than this share of its rows (and > ID_MIN) is an id
ID_MIN = 50
LARGE_TARGET = 1000  # regression targets beyond this get a note: the model starts near 0
COMMENT_WIDTH = 30  # longest category or class text shown in a comment


@dataclass
class FittedConfig:
    """What `fitted_config` made of a table file: the YAML and the facts `init --json` reports."""

    text: str
    data: str  # the data file, as given
    target: str | int  # as written in the config: a name, or a position in a file without a header
    task: str  # classification | regression
    rows: int
    features: list[str]  # the feature columns written (active ones)
    classes: list[str] | None = None


def from_data(file: str | os.PathLike, target: str | int | None = None, config_dir: str | os.PathLike = ".") -> str:
    """The commented YAML config for the table `file` (csv, or parquet by its .parquet/.pq suffix).

    Args:
        file: the CSV or Parquet file.
        target: the target column: a name, or a 0-based position (an int, or text such as
            '3' or '-1'); default the last column.
        config_dir: the folder the config will be written to; `data.path` is written
            relative to it.
    """
    return fitted_config(file, target, config_dir).text


def write_from_data(file: str | os.PathLike, path: str | os.PathLike | None = None, target: str | int | None = None,
                    force: bool = False) -> tuple[Path, FittedConfig]:
    """Write the config `from_data` makes for `file` to `path`; return the file and the facts.

    `path` defaults to the data file's name with `.yaml` in the current folder; a folder gets
    that name inside. Refuses to overwrite an existing file unless `force`, and never
    overwrites the data file itself.
    """
    default_name = f"{Path(file).stem or 'table'}.yaml"
    destination = _destination(path if path is not None else default_name, default_name, force)
    if os.path.exists(file) and os.path.exists(destination) and os.path.samefile(file, destination):
        raise ConfigError(Problem("is the data file itself; choose another PATH for the config", where=str(destination)))
    fitted = fitted_config(file, target, destination.parent, destination.name)
    _write(destination, fitted.text)
    return destination, fitted


def fitted_config(file: str | os.PathLike, target: str | int | None = None, config_dir: str | os.PathLike = ".",
                  config_name: str = "config.yaml") -> FittedConfig:
    """`from_data`, with the facts about the file besides the text (`config_name`: the
    config's file name, for the comment that says how to check and train it)."""
    import numpy as np

    from dlcli.config.schema import MISSING_MARKERS
    from dlcli.data.sources.table import guess_task
    from dlcli.data.tables.tablefile import inspect, read_table

    file = str(file)
    if not os.path.lexists(file):
        raise ConfigError(Problem("no such file; check the --from-data FILE path", where=file))
    kind = "parquet" if file.lower().endswith((".parquet", ".pq")) else "csv"
    markers = list(MISSING_MARKERS)
    fmt = inspect(file, header="auto", columns=None, delimiter="auto", missing=markers, kind=kind)
    names = fmt.names
    if len(names) < 2:
        raise ConfigError(Problem(
            f"found {len(names)} column; a table needs a target and at least one feature column"
            + ("" if kind == "parquet" else " (is the delimiter one of , ; tab | or runs of spaces?)"), where=file))
    target_name = _target_column(file, fmt, target)
    features = [n for n in names if n != target_name]
    empty: list[str] = []
    while True:  # a column with no value at all: leave it out (commented) and read again
        try:
            table = read_table(file, fmt, features, target_name, {}, markers, "fill")
            break
        except ConfigError as exc:
            found = re.match(r"column '(.*)' has no values", exc.problems[0].message)
            if not found or found[1] not in features or len(features) == 1:
                raise
            features.remove(found[1])
            empty.append(found[1])
    y = table.y
    if table.rows_read == 0:
        raise ConfigError(Problem("the file holds no data rows, only its header; a table needs rows", where=file))
    if y is None or len(y) == 0:
        raise ConfigError(Problem(f"the target column '{target_name}' has no values (every cell is missing); "
                                  "choose another with --target", where=file))
    task = guess_task(table)
    rows = table.rows_read
    positional = kind == "csv" and not fmt.header

    def ref(name: str):  # how the config names a column: its name, or its position in a file without a header
        return names.index(name) if positional else name

    # The feature lines: (column, what it holds, why it is left out or None).
    lines = []
    for j, name in enumerate(features):
        column = table.x[:, j]
        count = table.missing[j]
        if table.kinds[j] == "numeric":
            present = column[~np.isnan(column)]
            if len(present) == 0:
                lines.append((name, "numeric, every cell is missing", "every cell is missing: left out"))
                continue
            low, high = float(present.min()), float(present.max())
            note = f"numeric, {_number(low)} to {_number(high)}, mean {_number(float(present.mean()))}"
            if low == high:
                note = f"numeric, always {_number(low)} (tells the model nothing)"
            lines.append((name, f"{note}, {count:,} missing", None))
        else:
            categories = table.categories[j]
            codes = column[~np.isnan(column)].astype("int64")
            counts = np.bincount(codes, minlength=len(categories))
            order = sorted(range(len(categories)), key=lambda i: (-counts[i], i))
            shown = ", ".join(_short(categories[i]) for i in order[:SHOWN_CATEGORIES])
            more = ", ..." if len(categories) > SHOWN_CATEGORIES else ""
            plural = "y" if len(categories) == 1 else "ies"
            note = f"categorical, {len(categories):,} categor{plural}: {shown}{more}; {count:,} missing"
            out = None
            if len(categories) > max(ID_MIN, ID_SHARE * len(codes)):
                out = (f"categorical, {len(categories):,} distinct values in {len(codes):,} rows: "
                       "an id or free text? left out")
            lines.append((name, note, out))
    lines += [(name, "every cell is missing", "every cell is missing: left out") for name in empty]
    lines.sort(key=lambda line: names.index(line[0]))
    if all(out for _, _, out in lines):  # keep the model something to learn from, however poor
        lines = [(name, note, out if name in empty else None) for name, note, out in lines]
    active = [name for name, _, out in lines if out is None]

    classes = None
    if task == "classification":
        labels, counts = np.unique(y.astype(str) if y.dtype.kind in "OU" else y, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        classes = [str(v) for v in labels]
        shown = ", ".join(f"{_short(str(labels[i]), quote=True)} {counts[i]:,} ({counts[i] / len(y):.1%})"
                          for i in order[:SHOWN_CLASSES])
        more = ", ..." if len(labels) > SHOWN_CLASSES else ""
        what = "text labels" if table.target_kind == "text" else f"whole numbers, {len(labels)} distinct"
        target_note = (f"the target: {len(labels):,} class{'es' if len(labels) != 1 else ''} ({what}): {shown}{more}; "
                       f"the most common alone scores {counts.max() / len(y):.3f} accuracy")
    else:
        values = y.astype("float64")
        target_note = (f"the target: numbers from {_number(float(values.min()))} to {_number(float(values.max()))}, "
                       f"mean {_number(float(values.mean()))}, {len(np.unique(values)):,} distinct: regression")
    dropped = table.dropped.get("missing target")
    if dropped:
        target_note += f"; {dropped:,} rows without a target are left out"
    notes = [target_note]
    if task == "regression" and float(np.abs(y.astype("float64")).max()) > LARGE_TARGET:
        notes.append("large target values: the squared error starts huge and learns slowly; dividing the column "
                     "(say, thousands) or a higher learning_rate helps")

    config_dir = Path(config_dir)
    try:
        relative = Path(os.path.relpath(os.path.abspath(file), os.path.abspath(config_dir))).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        relative = Path(os.path.abspath(file)).as_posix()
    base = Path(file).name
    out = [
        f"# A {task} config made by `dlcli init --from-data` from {_comment(base)}: {rows:,} rows, {len(names)} columns.",
        f"# Check it:  dlcli validate {_comment(config_name)}      Train it:  dlcli train {_comment(config_name)}",
        "# Each feature line says what the file holds; comment a line out (#) to leave that column out.",
        "",
        f"name: {_scalar(_run_name(Path(file).stem))}",
        "seed: 42",
        "",
        "data:",
        f"  source: {kind}",
        _commented(f"  path: {_scalar(relative)}", "relative to this config's folder"),
    ]
    if kind == "csv":
        out.append(_commented(f"  header: {'true' if fmt.header else 'false'}",
                              "the first row names the columns" if fmt.header else
                              "the first row is data: columns are named by position (0 is the first)"))
        note = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "pipes", " ": "runs of spaces"}.get(fmt.delimiter, "")
        if fmt.decimal == ",":
            note += "; decimal commas (3,14) are read as numbers"
        out.append(_commented(f"  delimiter: {json.dumps(fmt.delimiter)}", note))
        if positional and len(names) <= 30:
            out.append(_commented(f"  # columns: {_comment(_flow([f'c{i}' for i in range(len(names))]))}",
                                  "optional: names for the columns, in order"))
    out += [f"  # {_comment(note)}" for note in notes]
    target_ref = ref(target_name)
    out.append(_commented(f"  target: {_scalar(target_ref)}", "the last column" if names[-1] == target_name else ""))
    out.append(_commented(f"  task: {task}", "the task: from the target; sets the output layer and loss below"))
    out.append(_commented("  features:", "every other column, one per line"))
    for name, note, left_out in lines:
        out.append(_commented(f"    {'# ' if left_out else ''}- {_scalar(ref(name))}", _comment(left_out or note)))
    out += [
        _commented(f"  missing: {_flow(markers)}", "cells that hold no value"),
        _commented("  on_missing: fill", "numbers: the training mean; categories: a 'missing' category"),
        "  validation_split: 0.2",
        "  test_split: 0.2",
        _commented("  normalize: standard", "columns on different scales need this"),
        "",
        "model:",
        "  layers:",
        "    - {type: Dense, units: 64, activation: relu}",
        "    - {type: Dropout, rate: 0.2}",
        "    - {type: Dense, units: 32, activation: relu}",
    ]
    if task == "classification":
        out.append(f"    - {{type: Dense, activation: softmax}}   # one unit per class ({len(classes):,}), inferred")
    else:
        out.append("    - {type: Dense, units: 1}   # one linear output: the predicted value")
    out += [
        "",
        "compile:",
        "  optimizer: {type: adam, learning_rate: 0.001}",
    ]
    if task == "classification":
        out += ["  loss: sparse_categorical_crossentropy", "  metrics: [accuracy]"]
    else:
        out += ["  loss: mean_squared_error", "  metrics: [mae]"]
    out += [
        "",
        "training:",
        "  epochs: 30",
        f"  batch_size: {64 if rows >= BIG_FILE_ROWS else 32}",
        "  early_stopping: {monitor: val_loss, patience: 5, restore_best_weights: true}",
        "",
    ]
    return FittedConfig("\n".join(out), file, target_ref, task, rows, active, classes)


def _target_column(file: str, fmt, target: str | int | None) -> str:
    """The name of the column `--target` means: a name, or a position (an int, or text like '3' or '-1')."""
    from dlcli.errors import did_you_mean

    names = fmt.names
    if target is None:
        return names[-1]
    if isinstance(target, str) and target in names:
        return target
    position = target if isinstance(target, int) else (int(target) if re.fullmatch(r"[+-]?\d+", target.strip()) else None)
    if position is not None:
        found = fmt.column(position)
        if found is not None:
            return found
        raise ConfigError(Problem(
            f"--target {position} is past the file's {len(names)} columns; give 0 to {len(names) - 1}, "
            "or -1 for the last", where=file))
    hint = did_you_mean(target, names)
    if fmt.kind == "csv" and not fmt.header:
        hint += "; the file has no header row, so give --target as a position (0 is the first column, -1 the last)"
    raise ConfigError(Problem(f"no column '{target}' for --target{hint}; the columns are: {fmt.shown()}", where=file))


_YAML_SPECIAL = re.compile(
    r"[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|0[xob][0-9a-fA-F_]+"
    r"|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?|~|null|Null|NULL|[yY]|[nN]|yes|Yes|YES|no|No|NO|true|True|TRUE"
    r"|false|False|FALSE|on|On|ON|off|Off|OFF|<<|=")


def _scalar(value) -> str:
    """`value` as one YAML scalar that any YAML reader (1.1 or 1.2) reads back as it is: a
    name such as `yes`, `1e3`, `a: b` or `# x` is quoted."""
    import yaml

    style = None
    if isinstance(value, str):
        if any(not c.isprintable() for c in value):
            style = '"'
        elif _YAML_SPECIAL.fullmatch(value):
            style = "'"
    text = yaml.safe_dump(value, default_style=style, allow_unicode=True, width=1 << 30)
    return text.removesuffix("\n...\n").rstrip("\n")


def _flow(values: list) -> str:
    """A list as one YAML flow sequence: [a, 'yes', b]."""
    inner = []
    for value in values:
        text = _scalar(value)
        if isinstance(value, str) and text == value and re.search(r"[,\[\]{}]", value):
            text = json.dumps(value, ensure_ascii=False)  # plain in a block, not in a flow sequence
        inner.append(text)
    return "[" + ", ".join(inner) + "]"


def _number(value: float) -> str:
    """A number as a comment shows it: 38.6, 1,836, 0.00123, 1.2e+07."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if 1000 <= abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _short(text: str, quote: bool = False) -> str:
    """A category or class as a comment shows it: one line, at most COMMENT_WIDTH characters."""
    text = _comment(text)
    if len(text) > COMMENT_WIDTH:
        text = text[: COMMENT_WIDTH - 3] + "..."
    return f"'{text}'" if quote or not text.strip() else text


def _commented(code: str, note: str, column: int = 28) -> str:
    """A config line with its comment, the comments of a section aligned where the code allows."""
    if not note:
        return code
    return f"{code}{' ' * max(column - len(code), 2)}# {note}"


def _comment(text: str) -> str:
    """Text that stays on its comment line."""
    return "".join(c if c.isprintable() else " " for c in str(text))


def _run_name(stem: str) -> str:
    """The file's stem as a run name: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem)[:100].strip("-.") or "table"
