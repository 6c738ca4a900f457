"""Splits: the seeded, stratified ways `load_data` cuts a source's samples in two.

- `split`: scikit-learn's `train_test_split` (the test and validation splits), with
  `stratified_rows` drawing the same rows in a fraction of the memory for a large streamed split;
- `fold`: scikit-learn's `StratifiedKFold` / `KFold`, the fold a `dlcli cv` run validates on
  (`data.fold`), and `fold_problem`, why some targets cannot be cut into so many folds;
- `check_fraction`: a split fraction that would leave a split empty, at the config's line.

They work alike on arrays of samples and on arrays of row numbers (a streamed split).
"""

from __future__ import annotations

import math

import numpy as np

from dlcli.config.schema import Config
from dlcli.errors import ConfigError, Problem

LEAN_ROWS = 1_000_000  # a streamed split of more rows is drawn by `stratified_rows`


def split(x, y, fraction: float, seed: int, stratify: bool, where: str, lean: bool = False):
    """scikit-learn's `train_test_split(x, y)`, seeded, stratified for classes when it can;
    `lean` (a streamed split of row numbers) draws a large stratified split with
    `stratified_rows`, the same split in a fraction of the memory."""
    from sklearn.model_selection import train_test_split

    labels = (y.argmax(1) if y.ndim == 2 else y) if stratify else None
    try:
        if lean and labels is not None and len(y) > LEAN_ROWS:
            train, test = stratified_rows(labels, fraction, seed)
            return x[train], x[test], y[train], y[test]
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:
        pass  # too few samples of some class to stratify: split at random instead
    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed)
    except ValueError as exc:
        raise ConfigError(Problem(f"cannot split the data: {exc}", where=where)) from None


def fold_problem(y: np.ndarray, folds: int, stratify: bool) -> str | None:
    """Why the training targets `y` cannot be cut into `folds` folds (None: they can)."""
    if len(y) < 2 * folds:
        return f"{folds} folds need at least {2 * folds} training samples, there are {len(y)}"
    if not stratify:
        return None
    labels = y.argmax(1) if y.ndim == 2 else y
    counts = np.unique(labels, return_counts=True)[1]
    if counts.min() < folds:
        return (
            f"{folds} stratified folds need {folds} training samples of every class; the "
            f"smallest class has {counts.min()}: use at most {max(2, counts.min())} folds"
        )
    return None


def fold(x, y, config: Config, stratify: bool):
    """(x_train, x_val, y_train, y_val): the training data less fold `data.fold.index` of
    `data.fold.of`, and that fold, as scikit-learn's `StratifiedKFold` (classes) or `KFold`
    cuts them, shuffled with the seed. The same config gives the same folds."""
    from sklearn.model_selection import KFold, StratifiedKFold

    fold = config.data.fold
    problem = fold_problem(y, fold.of, stratify)
    if problem:
        raise ConfigError(Problem(problem, where=config.where(("data", "fold", "of"))))
    labels = (y.argmax(1) if y.ndim == 2 else y) if stratify else None
    cut = (StratifiedKFold if stratify else KFold)(fold.of, shuffle=True, random_state=config.seed)
    for number, (train, val) in enumerate(cut.split(np.zeros(len(y)), labels)):
        if number == fold.index:
            return x[train], x[val], y[train], y[val]
    raise AssertionError("unreachable: FoldConfig keeps index below of")


def stratified_rows(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row numbers as `train_test_split(..., test_size=fraction,
    random_state=seed, stratify=labels)` draws them, step for step (scikit-learn's
    `StratifiedShuffleSplit`), with each class's rows written into the two arrays where
    scikit-learn gathers them in a Python list (40 bytes a row: 400 MB at 10 million rows).
    A test checks the two agree. ValueError where scikit-learn raises one."""
    from sklearn.model_selection._split import _validate_shuffle_split
    from sklearn.utils.extmath import _approximate_mode

    n_train, n_test = _validate_shuffle_split(len(labels), fraction, None, default_test_size=0.25)
    classes, class_counts = np.unique(labels, return_counts=True)
    if np.min(class_counts) < 2 or n_train < len(classes) or n_test < len(classes):
        raise ValueError("too few samples of a class to stratify")
    by_class = np.argsort(
        np.searchsorted(classes, labels), kind="stable"
    )  # np.unique's inverse, sorted
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train, test = np.empty(int(n_i.sum()), dtype="int64"), np.empty(int(t_i.sum()), dtype="int64")
    start = train_at = test_at = 0
    for i, count in enumerate(class_counts):
        rows = by_class[start : start + count].take(rng.permutation(count), mode="clip")
        train[train_at : train_at + n_i[i]] = rows[: n_i[i]]
        test[test_at : test_at + t_i[i]] = rows[n_i[i] : n_i[i] + t_i[i]]
        start, train_at, test_at = start + count, train_at + n_i[i], test_at + t_i[i]
    del by_class
    rng.shuffle(train)  # what rng.permutation does, in place
    rng.shuffle(test)
    return train, test


def check_fraction(config: Config, key: str, samples: int, keep: int) -> None:
    """`data.<key>` must leave `keep` samples of `samples` and take at least one (as
    scikit-learn counts: the split takes ceil(fraction * samples)); a ConfigError at the
    key's line saying what each side would get and what to set otherwise."""
    fraction = getattr(config.data, key)
    taken = math.ceil(fraction * samples)
    if taken >= 1 and samples - taken >= keep:
        return
    part, rest = {
        "test_split": ("test", "training and validation"),
        "validation_split": ("validation", "training"),
    }[key]
    most = math.floor(100 * (samples - keep) / samples) / 100
    while most > 0 and samples - math.ceil(most * samples) < keep:
        most = round(most - 0.01, 2)
    fix = f"set data.{key} to at most {most:g}" if most > 0 else "use a larger data file"
    raise ConfigError(
        config.problem(
            ("data", key),
            (
                f"{fraction:g} of {samples} samples gives {taken} for {part} and leaves {samples - taken} for {rest}, "
                f"which needs at least {keep}; {fix}"
            ),
        )
    )
