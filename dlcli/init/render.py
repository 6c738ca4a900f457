"""A commented config for a profiled table (`dlcli.init.profile`): its form, one line per
feature column saying what the file holds, the target with its classes or range, and a
model, loss and metrics that fit the task. It validates and trains as written.

Example:
    >>> print(render_config(profile_table("census.csv"), config_dir=".", config_name="census.yaml"))
    # A classification config made by `dlcli init --from-data` from census.csv: ...
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from dlcli.init.profile import ColumnProfile, TableProfile

STEPS = 20_000  # the updates a generated config's training allows (early stopping ends most sooner)
BATCHES = ((1_000, 16), (10_000, 32), (100_000, 64), (1_000_000, 256))  # training rows < N: batch
SHOWN_CATEGORIES = 5  # categories named in a column's comment, most common first
SHOWN_CLASSES = 10
LARGE_TARGET = 1000  # regression targets beyond this get a note: the model starts near 0
COMMENT_WIDTH = 30  # longest category or class text shown in a comment
DELIMITER_NAMES = {
    ",": "commas",
    ";": "semicolons",
    "\t": "tabs",
    "|": "pipes",
    " ": "runs of spaces",
}


def render_config(
    profile: TableProfile, config_dir: str | os.PathLike = ".", config_name: str = "config.yaml"
) -> str:
    """The config's YAML text; `data.path` relative to `config_dir`, `config_name` in the
    comment that says how to check and train it."""
    target, kind, names = profile.target, profile.kind, profile.names
    relative = relative_path(profile.file, config_dir)
    base = Path(profile.file).name
    out = [
        (
            f"# A {target.task} config made by `dlcli init --from-data` from {_comment(base)}: {profile.rows:,} rows, "
            f"{len(names)} columns."
        ),
        f"# Check it:  dlcli validate {_comment(config_name)}      Train it:  dlcli train {_comment(config_name)}",
        "# Each feature line says what the file holds; comment a line out (#) to leave that column out.",
        "",
        f"name: {_scalar(run_name(Path(profile.file).stem))}",
        "seed: 42",
        "",
        "data:",
        f"  source: {kind}",
        commented(f"  path: {_scalar(relative)}", "relative to this config's folder"),
    ]
    if kind == "csv":
        if profile.skip_rows:
            out.append(
                commented(
                    f"  skip_rows: {profile.skip_rows}",
                    _comment(
                        f"{profile.skipped}: a count line, neither header nor data, so skipped"
                    ),
                )
            )
        out.append(
            commented(
                f"  header: {'true' if profile.header else 'false'}",
                "the first row names the columns"
                if profile.header
                else "the first row is data: columns are named by position (0 is the first)",
            )
        )
        note = DELIMITER_NAMES.get(profile.delimiter, "")
        if profile.decimal == ",":
            note += "; decimal commas (3,14) are read as numbers"
        out.append(commented(f"  delimiter: {json.dumps(profile.delimiter)}", note))
        if profile.positional and len(names) <= 30:
            out.append(
                commented(
                    f"  # columns: {_comment(_flow([f'c{i}' for i in range(len(names))]))}",
                    "optional: names for the columns, in order",
                )
            )
    out += [f"  # {_comment(note)}" for note in _target_notes(profile)]
    out.append(
        commented(
            f"  target: {_scalar(target.ref)}",
            "the last column" if names[-1] == target.name else "",
        )
    )
    out.append(
        commented(
            f"  task: {target.task}",
            "the task: from the target; sets the output layer and loss below",
        )
    )
    out.append(commented("  features:", "every other column, one per line"))
    texts = [c for c in profile.columns if c.kind == "text" and not c.left_out]
    for column in texts[1:]:
        column.left_out = "free text: a table holds one text column; left out"
    for column in profile.columns:
        prefix = "# " if column.left_out else ""
        entry = _scalar(profile.ref(column.name))
        if column.kind == "text" and not column.left_out:
            entry = f"{{name: {entry}, type: text}}"
        out.append(
            commented(
                f"    {prefix}- {entry}",
                _comment(column.left_out or _note(column)),
            )
        )
    if texts:
        out.append(
            commented(
                "  text: {output_mode: tf_idf, max_tokens: 2000}",
                f"{texts[0].name}'s words, adapted on the training rows, beside the other columns",
            )
        )
    out += [
        commented(f"  missing: {_flow(profile.missing_markers)}", "cells that hold no value"),
        commented(
            "  on_missing: fill", "numbers: the training mean; categories: a 'missing' category"
        ),
        "  validation_split: 0.2",
        "  test_split: 0.2",
        *(
            [
                commented(
                    "  scale_target: auto",
                    "the network learns the standardised target; its outputs are in the target's units",
                )
            ]
            if target.task == "regression"
            else []
        ),
        commented("  normalize: standard", "columns on different scales need this"),
        "",
        "model:",
        "  layers:",
        "    - {type: Dense, units: 64, activation: relu}",
        "    - {type: Dropout, rate: 0.2}",
        "    - {type: Dense, units: 32, activation: relu}",
    ]
    if target.task == "classification":
        out.append(
            f"    - {{type: Dense, activation: softmax}}   # one unit per class ({len(target.classes):,}), inferred"
        )
    else:
        out.append("    - {type: Dense, units: 1}   # one linear output: the predicted value")
    out += ["", "compile:", "  optimizer: {type: adam, learning_rate: 0.001}"]
    if target.task == "classification":
        out += ["  loss: sparse_categorical_crossentropy", "  metrics: [accuracy]"]
    else:
        out += ["  loss: mean_squared_error", "  metrics: [mae]"]
    epochs, batch, patience = sized_training(profile.rows)
    out += [
        "",
        commented(
            "training:",
            f"sized to {profile.rows:,} rows: at most about {STEPS:,} updates; "
            "early stopping keeps the best epoch",
        ),
        f"  epochs: {epochs}",
        f"  batch_size: {batch}",
        (
            f"  early_stopping: {{monitor: val_loss, patience: {patience}, "
            f"restore_best_weights: true, start_from_epoch: {min(10, patience)}}}"
        ),
        "",
    ]
    return "\n".join(out)


def sized_training(rows: int) -> tuple[int, int, int]:
    """(epochs, batch_size, patience) for a table of `rows` rows. Batches grow with the
    table (16 rows for a few hundred, 1,024 for millions); epochs give about `STEPS`
    updates, between 20 and 500, so a small table trains long enough and a large one does
    not take all day; early stopping's patience is a tenth of the epochs (5 to 30), and it
    keeps no epoch before the `min(10, patience)`th (`start_from_epoch`): on a small table one
    odd validation row can make an epoch that has not yet fitted the training rows look best."""
    train = max(1, int(rows * 0.64))  # less the default test and validation splits
    batch = next((size for limit, size in BATCHES if train < limit), 1024)
    epochs = min(500, max(20, math.ceil(STEPS / math.ceil(train / batch))))
    return epochs, batch, min(30, max(5, epochs // 10))


def _note(column: ColumnProfile) -> str:
    """What a feature line's comment says the column holds."""
    if column.kind == "empty":
        return "every cell is missing"
    if column.kind == "text":
        return f"free text, {column.distinct:,} different texts; {column.missing:,} missing"
    if column.kind == "numeric":
        if column.low is None:
            return "numeric, every cell is missing"
        note = (
            f"numeric, {_number(column.low)} to {_number(column.high)}, mean {_number(column.mean)}"
        )
        if column.low == column.high:
            note = f"numeric, always {_number(column.low)} (tells the model nothing)"
        return f"{note}, {column.missing:,} missing"
    shown = ", ".join(_short(category) for category, _ in column.categories[:SHOWN_CATEGORIES])
    more = ", ..." if column.distinct > SHOWN_CATEGORIES else ""
    plural = "y" if column.distinct == 1 else "ies"
    return f"categorical, {column.distinct:,} categor{plural}: {shown}{more}; {column.missing:,} missing"


def _target_notes(profile: TableProfile) -> list[str]:
    """The comment lines above `target:`: its classes or range, and what to know about it."""
    target = profile.target
    if target.task == "classification":
        total = sum(count for _, count in target.classes)
        shown = ", ".join(
            f"{_short(label, quote=True)} {count:,} ({count / total:.1%})"
            for label, count in target.classes[:SHOWN_CLASSES]
        )
        more = ", ..." if target.distinct > SHOWN_CLASSES else ""
        what = "text labels" if target.text else f"whole numbers, {target.distinct} distinct"
        top = max(count for _, count in target.classes)
        note = (
            f"the target: {target.distinct:,} class{'es' if target.distinct != 1 else ''} ({what}): {shown}{more}; "
            f"the most common alone scores {top / total:.3f} accuracy"
        )
    else:
        note = (
            f"the target: numbers from {_number(target.low)} to {_number(target.high)}, "
            f"mean {_number(target.mean)}, {target.distinct:,} distinct: regression"
        )
    if target.dropped:
        note += f"; {target.dropped:,} rows without a target are left out"
    notes = [note]
    if target.task == "regression" and max(abs(target.low), abs(target.high)) > LARGE_TARGET:
        notes.append(
            "large target values: the squared error starts huge and learns slowly; dividing the column "
            "(say, thousands) or a higher learning_rate helps"
        )
    return notes


_YAML_RESERVED = re.compile(
    r"[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|0[xob][0-9a-fA-F_]+"
    r"|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?|~|null|Null|NULL|[yY]|[nN]|yes|Yes|YES|no|No|NO|true|True|TRUE"
    r"|false|False|FALSE|on|On|ON|off|Off|OFF|<<|="
)


def _scalar(value) -> str:
    """`value` as one YAML scalar that any YAML reader (1.1 or 1.2) reads back as it is: a
    name such as `yes`, `1e3`, `a: b` or `# x` is quoted."""
    import yaml

    style = None
    if isinstance(value, str):
        if any(not c.isprintable() for c in value):
            style = '"'
        elif _YAML_RESERVED.fullmatch(value):
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


def relative_path(file: str | os.PathLike, config_dir: str | os.PathLike) -> str:
    """`file` as the config in `config_dir` names it: relative to that folder (absolute on
    another drive, where Windows has no relative path)."""
    try:
        return Path(os.path.relpath(os.path.abspath(file), os.path.abspath(config_dir))).as_posix()
    except ValueError:
        return Path(os.path.abspath(file)).as_posix()


def commented(code: str, note: str, column: int = 28) -> str:
    """A config line with its comment, the comments of a section aligned where the code allows."""
    if not note:
        return code
    return f"{code}{' ' * max(column - len(code), 2)}# {note}"


def _comment(text: str) -> str:
    """Text that stays on its comment line."""
    return "".join(c if c.isprintable() else " " for c in str(text))


def run_name(stem: str, default: str = "table") -> str:
    """The file's stem as a run name: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem)[:100].strip("-.") or default


__all__ = ["commented", "relative_path", "render_config", "run_name"]
