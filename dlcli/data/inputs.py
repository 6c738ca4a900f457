"""The files a finished run reads: `predict`'s features and `evaluate --data`'s labelled
rows, in the form the run was trained on (a raw table with the run's own preprocessing, an
NPZ of arrays, or a CSV of numbers), shaped for the run's model.
"""

from __future__ import annotations

import os

import numpy as np

from dlcli.config.schema import Config
from dlcli.data.dataset import Split, unseen_labels
from dlcli.data.sources.base import checked_targets, numeric_features
from dlcli.data.sources.npzfile import read_features as read_npz_features
from dlcli.data.sources.npzfile import read_labeled as read_npz_labeled
from dlcli.data.streaming import StreamSplit
from dlcli.data.tables.form import LeadLine
from dlcli.data.tables.preprocessing import TablePreprocessing
from dlcli.data.tables.tablefile import TableFile
from dlcli.data.tables.whole import read_table
from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.runs.record import DataRecord


def read_features_file(
    path: str, summary: DataRecord, preprocessing: TablePreprocessing | None
) -> tuple:
    """Features for `predict` as (model input, unseen categories): a raw table in the
    training file's form for a table run; else an NPZ (array `x`) or a CSV of numbers (the
    model's columns by name, or every column of a file without a header, by position)."""
    if preprocessing is not None:
        if path.endswith(".npz"):
            raise ConfigError(
                Problem(
                    f"this run was trained on a {preprocessing.format.kind} table; give raw rows in that form "
                    "(an NPZ holds arrays, not the table's columns)",
                    where=path,
                )
            )
        x, _, unseen = preprocessing.read(path, target=False)
        return x, unseen
    input_shape = tuple(summary.input_shape)
    if path.endswith(".npz"):
        return _reshape(read_npz_features(path), input_shape, path), {}
    x, _ = _numbers_file(path, summary.features, None, int(np.prod(input_shape)))
    return _reshape(x, input_shape, path), {}


def read_labeled_file(
    path: str,
    config: Config,
    summary: DataRecord,
    labels: list | None,
    preprocessing: TablePreprocessing | None,
) -> tuple[Split, dict]:
    """Features and encoded targets for `evaluate --data`, and the unseen categories."""
    unseen = {}
    if preprocessing is not None:
        x, y, unseen = preprocessing.read(path, target=True)
    elif path.endswith(".npz"):
        x, y = read_npz_labeled(path, config.data.keys)
    else:
        x, y = _numbers_file(
            path, summary.features, summary.target or "target", int(np.prod(summary.input_shape))
        )
        y = checked_targets(y, path)
    x = _reshape(x, tuple(summary.input_shape), path)
    if summary.task == "regression" or y.ndim == 2:
        try:
            return Split(x, y.astype("float32")), unseen
        except (TypeError, ValueError):
            raise ConfigError(
                Problem("the target holds text; this run's model predicts numbers", where=path)
            ) from None
    return Split(x, _class_indices(y, labels, path)), unseen


def _class_indices(y, labels: list, path: str) -> np.ndarray:
    """Each target's index among the run's labels (compared as text); a ConfigError naming
    the labels training never saw."""
    index = {str(label): i for i, label in enumerate(labels)}
    values = np.asarray(y).astype(str)
    unknown = [v for v in dict.fromkeys(values.tolist()) if v not in index]
    if unknown:
        raise ConfigError(Problem(unseen_labels(unknown, labels), where=path))
    return np.asarray([index[v] for v in values], dtype="int64")


def _numbers_file(
    path: str, feature_names: list[str] | None, target: str | None, width: int
) -> tuple:
    """A CSV of numbers for a model trained on arrays: its feature columns by name (with the
    target when `target` is named), or, in a file without a header, every column by position."""
    try:
        file = TableFile.open(path)
    except LeadLine as lead:  # a count line: this run's config has no table keys to skip it
        raise ConfigError(lead.problem("remove it")) from None
    fmt = file.format
    names = list(feature_names or [])
    if not (names and all(n in fmt.names for n in names)):
        if fmt.header or len(fmt.names) != width + (target is not None):
            expected = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            raise ConfigError(
                Problem(
                    f"the CSV lacks the model's feature columns ({expected or f'{width} numbers per row'}); give them "
                    f"by name in a header, or {width} columns{' then the target' if target else ''} without one",
                    where=path,
                )
            )
        names = fmt.names[:width]
        target = fmt.names[width] if target is not None else None
    elif target is not None and target not in fmt.names:
        raise ConfigError(
            Problem(
                f"no target column '{target}'{did_you_mean(target, fmt.names)}; "
                f"columns are: {', '.join(fmt.names)}",
                where=path,
            )
        )
    table = read_table(file, names, target, dict.fromkeys(names, "numeric"), "error")
    return numeric_features(table.x, path), table.y


def _reshape(x: np.ndarray, input_shape: tuple, path: str) -> np.ndarray:
    if tuple(x.shape[1:]) == tuple(input_shape):
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(input_shape)):
        return x.reshape((len(x), *input_shape))
    raise ConfigError(
        Problem(
            f"features have shape {tuple(x.shape[1:])} per sample, the model takes {tuple(input_shape)}",
            where=path,
        )
    )


def media_inputs(
    path: str,
    config: Config,
    summary: DataRecord,
    labelled: bool = False,
    labels: list | None = None,
    text=None,
) -> tuple[StreamSplit, list, list[dict]]:
    """Images, recordings or documents for a finished run, read as it was trained (an
    image's size and colour mode, a recording's rate and length, text through the run's
    vocabulary `text`), as a split in file order: `predict`'s one file, folder (read
    recursively) or table (of paths; for text, of documents), or, `labelled` (with the run's
    `labels`), `evaluate --data`'s folder of class folders (one class is enough) or table
    with the target. Also the files (a table of documents: its row numbers, from 1), and the
    skipped files (`on_bad_file: skip`; with `error`, a file that fails is a ConfigError
    naming it)."""
    from dlcli.data.media.listing import SUFFIXES, is_table, list_folder, list_inputs, list_table
    from dlcli.data.sources.media import KINDS, bad_files

    kind = KINDS[summary.source]
    suffixes = SUFFIXES[kind.noun]
    media = getattr(summary, summary.source, None) or {}
    trained = media.get("path") or {}
    if is_table(path):
        listing = list_table(config, path, suffixes, kind.noun, labelled, trained.get("column"))
    elif labelled:
        listing = list_folder(path, suffixes, path, kind.noun, least=1)
    else:
        listing = list_inputs(path, suffixes, kind.noun)
    if kind.noun == "image" and not media.get("image_size"):  # a run of an older dlcli
        media = {**media, "image_size": list(summary.input_shape[:2])}
    settings = kind.settings(config, listing.files, media)
    # A file not of the kind in a folder given to read (a README) is passed over, and
    # listed; one the table names is an error like any unreadable file.
    table = listing.layout == "table"
    others = {p: kind.not_kind for p in listing.others}
    decoded = kind.decode(
        config, {**settings, "layout": listing.layout}, listing.files, others if table else {}
    )
    skipped = bad_files(config, listing, decoded.bad, training=False)
    skipped += [
        {"file": os.path.relpath(p, listing.root), "reason": kind.not_kind}
        for p in ([] if table else listing.others)
    ]
    if kind.noun == "text":
        decoded.rows.use(text)
    files = (
        [int(i) + 1 for i in decoded.kept]
        if table and kind.noun == "text"
        else [listing.files[i] for i in decoded.kept]
    )
    if not files:
        raise ConfigError(Problem(f"holds no {kind.noun} that could be read", where=path))
    y = np.zeros(len(files), dtype="int64")
    if labelled:
        given = np.asarray(listing.labels, dtype=object)[decoded.kept]
        y = given.astype("float32") if labels is None else _class_indices(given, labels, path)
    split = StreamSplit(decoded.rows, np.arange(len(files)), y, config.training.batch_size)
    return split, files, skipped


__all__ = ["media_inputs", "read_features_file", "read_labeled_file"]
