"""`data.source: csv | parquet`: a table file (and an optional test file) as features and a target.

The config names the target and the features by column name or 0-based position; this
module resolves them against the file's columns (`dlcli.data.tables.tablefile.TableFile.open`),
with every mistake a ConfigError at the config's line, and reads the file whole
(`dlcli.data.tables.whole.read_table`). Categorical columns come back as codes into the file's
own categories: the vocabulary is fitted on the training split later
(`dlcli.data.tables.preprocessing`), so nothing of the validation or test rows leaks into it.
With `data.streaming` the files are scanned instead (`dlcli.data.tables.stream.scan`): `x` is
then a `Rows` read a piece at a time, and a text target comes as codes into `y_labels`.

`dlcli.data.tables` is imported inside the functions: its modules import `sources.base` and
`sources.datafile`, which run this package's `__init__`, which imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dlcli.data.sources.base import Loaded, Source
from dlcli.data.sources.datafile import sha256_file, streams
from dlcli.errors import ConfigError, Problem, did_you_mean

if TYPE_CHECKING:
    from dlcli.data.tables.columns import TableColumns
    from dlcli.data.tables.form import TableFormat

MAX_GUESSED_CLASSES = (
    20  # a target of whole numbers with at most this many values is a set of classes
)


@dataclass
class TableInfo:
    """What the data stage needs of a table besides its arrays (Loaded.table)."""

    format: TableFormat
    target: str
    feature_names: list[str]
    kinds: list[str]
    categories: list[list[str] | None]  # the training file's categories per feature
    missing_markers: list[str]
    on_missing: str
    test_categories: list[list[str] | None] | None = None  # the test file's, when there is one
    rows: dict = field(default_factory=dict)  # read / dropped counts per file
    target_kind: str = "text"


class TableSource(Source):
    names = ("csv", "parquet")

    def load(self, config) -> Loaded:
        from dlcli.data.tables import stream, tablefile, whole

        d = config.data
        read = (
            stream.scan if streams(config) else whole.read_table
        )  # whole, or a piece at a time (data.streaming)
        shown = config.where(("data", "columns"))
        file = tablefile.TableFile.open(
            d.path, d.header, d.columns, d.delimiter, d.missing, d.source, shown, d.skip_rows
        )
        fmt = file.format
        target, features, kinds = select(config, fmt)
        texts = [name for name, kind in kinds.items() if kind == "text"]
        # A text column is read as categories (each distinct text once); the vocabulary is
        # adapted on the training rows' texts later (`dlcli.data.tables.preprocessing`).
        kinds = {name: "categorical" if kind == "text" else kind for name, kind in kinds.items()}
        train = read(file, features, target, kinds, d.on_missing)
        for name in texts:
            train.kinds[features.index(name)] = "text"
        files = {d.path: sha256_file(d.path)}
        rows = {"train_file": _rows(train)}
        info = TableInfo(
            fmt,
            target,
            features,
            train.kinds,
            train.categories,
            list(d.missing),
            d.on_missing,
            rows=rows,
            target_kind=train.target_kind,
        )
        test = None
        if d.test_path:
            test_file = tablefile.TableFile.open(
                d.test_path,
                d.header,
                d.columns,
                fmt.delimiter if d.source == "csv" else "auto",
                d.missing,
                d.source,
                shown,
                d.skip_rows,
            )
            _same_columns(test_file.format, [*features, target], d.test_path)
            read_as = [k if k != "text" else "categorical" for k in train.kinds]
            test = read(test_file, features, target, dict(zip(features, read_as)), d.on_missing)
            info.test_categories = test.categories
            rows["test_file"] = _rows(test)
            files[d.test_path] = sha256_file(d.test_path)
        labels = _common_labels(train, test)  # after it, the codes of both files agree
        return Loaded(
            x=train.x,
            y=train.y,
            x_test=test.x if test is not None else None,
            y_test=test.y if test is not None else None,
            feature_names=features,
            files=files,
            task=guess_task(train),
            table=info,
            y_labels=labels,
        )


def _common_labels(train: TableColumns, test: TableColumns | None) -> list[str] | None:
    """Streamed text targets: the labels of both files, sorted, with each file's codes
    turned into codes into them (in place). None for targets held as values."""
    if train.y_labels is None:
        return None
    if test is None or test.y_labels is None:
        return train.y_labels
    labels = sorted(set(train.y_labels) | set(test.y_labels))
    position = {label: i for i, label in enumerate(labels)}
    for table in (train, test):
        remap = np.array([position[label] for label in table.y_labels] + [-1], dtype="int32")
        table.y = remap[table.y]
    return labels


def _rows(table: TableColumns) -> dict:
    return {"read": table.rows_read, **({"dropped": table.dropped} if table.dropped else {})}


def guess_task(table: TableColumns) -> str:
    """Text, or whole numbers with few distinct values each seen more than once: classes;
    other numbers: regression. Whole numbers most of whose values occur once (21 rows of 14
    values) are a measurement, not classes: a test split would hold values training never saw."""
    if table.target_kind == "text" or table.y is None:
        return "classification"
    if table.y.dtype.kind in "iu":
        counts = np.unique(table.y, return_counts=True)[1]
        if len(counts) <= MAX_GUESSED_CLASSES and np.sum(counts == 1) <= len(counts) / 2:
            return "classification"
    return "regression"


def _column(config, path: tuple, ref, fmt: TableFormat, what: str) -> str:
    """The column a config entry (a name, or a position) refers to; a ConfigError at its line."""
    found = fmt.column(ref)
    if found is not None:
        return found
    names = fmt.names
    if isinstance(ref, int):
        raise ConfigError(
            config.problem(
                path,
                (
                    f"{what} position {ref} is past the file's {len(names)} columns (0 to {len(names) - 1}, -1 for the last)"
                ),
            )
        )
    hint = did_you_mean(ref, names)
    if not fmt.header and fmt.kind == "csv" and not config.data.columns:
        hint += "; the file has no header row, so its columns are named by position (0, 1, ...) or by data.columns"
    raise ConfigError(
        config.problem(path, f"no {what} column '{ref}'{hint}; columns are: {fmt.shown()}")
    )


def select(config, fmt: TableFormat) -> tuple[str, list[str], dict]:
    """(target, features, kinds given in the config) of a table, resolved against its columns."""
    d = config.data
    target = _column(config, ("data", "target"), d.target, fmt, "target")
    if d.features is None:
        features = [n for n in fmt.names if n != target]
        kinds = {}
    else:
        features, kinds = [], {}
        for i, entry in enumerate(d.features):
            path = ("data", "features", i)
            name = _column(config, path, entry.name, fmt, "feature")
            if name == target:
                raise ConfigError(
                    config.problem(
                        path,
                        (
                            f"the target '{name}' is also listed as a feature; the model must not see its target, "
                            "so remove it from data.features"
                        ),
                    )
                )
            if name in features:
                raise ConfigError(
                    config.problem(path, f"feature '{name}' is listed twice; remove one")
                )
            features.append(name)
            if entry.type == "image":
                raise ConfigError(
                    config.problem(
                        (*path, "type"),
                        f"'{name}' has type image, which data.source: images reads (a table "
                        "of image paths with its target); set data.source: images, or give "
                        "the column type numeric or categorical",
                    )
                )
            if entry.type == "text" and streams(config):
                raise ConfigError(
                    config.problem(
                        (*path, "type"),
                        "a table with a text column is read whole; set data.streaming: false",
                    )
                )
            if entry.type != "auto":
                kinds[name] = entry.type
    if not features:
        raise ConfigError(
            config.problem(("data", "target"), "no feature columns: the file holds only the target")
        )
    return target, features, kinds


def _same_columns(fmt: TableFormat, wanted: list[str], path: str) -> None:
    absent = fmt.lacking(wanted)
    if absent is not None:
        raise ConfigError(
            Problem(
                f"the test file lacks column '{absent}'{did_you_mean(absent, fmt.names)}; it must have the "
                "training file's columns",
                where=path,
            )
        )
