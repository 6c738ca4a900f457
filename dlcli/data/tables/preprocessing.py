"""Typed table features: the preprocessing fitted on the training split, and applied to
every file the run reads after (the test file, `evaluate --data`, `predict`).

`fit` looks at the training split only: per numeric column its mean, standard deviation,
range and missing count; per categorical column its vocabulary (the categories seen in
training, most frequent first), encoded as one-hot up to `ONE_HOT_MAX` categories and as a
trained embedding above, with index 0 for a missing or unseen category. The result,
`TablePreprocessing`, is what the run folder's `preprocessing.json` holds; the numeric part
travels inside the model (`dlcli.data.tables.encoder.TableEncoder`), and the text-to-index part
runs here, in numpy, so the model itself works on every Keras backend.

With `data.streaming` the same statistics are gathered block by block (`TableCounts`).

Example:
    >>> prep = fit(loaded.table, dataset.train.x, "standard")
    >>> prep.encode(dataset.test.x, loaded.table.test_categories)   # codes -> vocabulary
    >>> x, y, unseen = prep.read("new-rows.csv", target=False)       # raw file -> model input
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from dlcli.data.tables.form import LeadLine, TableFormat, inspect
from dlcli.data.tables.tablefile import TableFile
from dlcli.data.tables.whole import read_table
from dlcli.errors import ConfigError, Problem, did_you_mean

ONE_HOT_MAX = 32  # categories up to which a column is one-hot; above, an embedding
MAX_CATEGORIES = 10_000  # the most frequent categories kept; rarer ones share the 'unseen' index
FORMAT_VERSION = 1
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_BATCH = 4096  # a text column's rows vectorized at a time


@dataclass
class Feature:
    """One feature column as the run encodes it (an entry of preprocessing.json)."""

    name: str
    type: str  # numeric | categorical
    missing: int = 0  # cells missing in the training split
    mean: float | None = None  # numeric: statistics of the training split
    std: float | None = None
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None  # categorical: index i + 1; index 0 is missing or unseen
    counts: list[int] | None = None  # training rows per category
    encoding: str | None = None  # one_hot | embedding
    embedding_dim: int | None = None
    dropped_categories: int | None = (
        None  # rare categories beyond MAX_CATEGORIES, encoded as unseen
    )


@dataclass
class TablePreprocessing:
    """Everything needed to turn a raw table file into the model's input."""

    format: TableFormat
    target: str
    features: list[Feature]
    missing: list[str]
    on_missing: str
    normalize: str | float
    rows: dict = field(default_factory=dict)
    unseen: dict = field(
        default_factory=dict
    )  # test split: column -> values never seen in training
    text: object | None = None  # a text column's vectorizer (`TextPreprocessing`), fitted on train

    # ------------------------------------------------------------ the model's side

    def layer_kwargs(self) -> dict:
        """TableEncoder's arguments: positions, fill values and scaling of the numeric
        columns, and the size and encoding of each categorical one."""
        numeric = [i for i, f in enumerate(self.features) if f.type == "numeric"]
        fill, offset, scale = [], [], []
        for i in numeric:
            f = self.features[i]
            mean = f.mean if f.mean is not None else 0.0
            fill.append(mean)
            if self.normalize == "standard":
                offset.append(mean)
                scale.append(f.std if f.std and f.std > 1e-12 else 1.0)
            elif self.normalize == "minmax":
                low, span = (f.min or 0.0), ((f.max or 0.0) - (f.min or 0.0))
                offset.append(low)
                scale.append(span if span > 1e-12 else 1.0)
            else:
                offset.append(0.0)
                scale.append(
                    float(self.normalize) if isinstance(self.normalize, (int, float)) else 1.0
                )
        categorical = [
            {"index": i, "size": len(f.categories) + 1, "dim": f.embedding_dim or 0}
            for i, f in enumerate(self.features)
            if f.type == "categorical"
        ]
        return {
            "numeric": numeric,
            "fill": fill,
            "offset": offset,
            "scale": scale,
            "categorical": categorical,
            # a text column's vector, after the table's own columns, goes through as it is
            **({"passthrough": len(self.features)} if self.text is not None else {}),
        }

    # ------------------------------------------------------------ codes to vocabulary

    def encode(self, x: np.ndarray, categories: list[list[str] | None]) -> dict[str, dict]:
        """Turn `x`'s categorical columns from codes into `categories` (a file's own, as
        `read_table` gave them) into vocabulary indices, in place. Returns, per column
        with any, the values never seen in training and how many rows hold each."""
        unseen = {}
        for j, feature in enumerate(self.features):
            if feature.type != "categorical":
                continue
            position = {c: i + 1 for i, c in enumerate(feature.categories)}
            names = categories[j] or []
            lookup = np.array([position.get(c, 0) for c in names] + [0], dtype="float32")
            index = _code_index(x[:, j], len(names))
            if any(c not in position for c in names):
                unseen.update(self._unseen(j, names, np.bincount(index, minlength=len(names) + 1)))
            x[:, j] = lookup[index]
        return unseen

    def unseen_in(self, counts: list, categories: list[list[str] | None]) -> dict[str, dict]:
        """What `encode` returns, from how often each code occurs per categorical column
        (`TableCounts.codes` of the rows) instead of the rows themselves."""
        unseen = {}
        for j, feature in enumerate(self.features):
            if feature.type == "categorical":
                unseen.update(self._unseen(j, categories[j] or [], counts[j]))
        return unseen

    def _unseen(self, j: int, names: list[str], counts: np.ndarray) -> dict[str, dict]:
        known = set(self.features[j].categories)
        found = {c: int(counts[k]) for k, c in enumerate(names) if c not in known and counts[k]}
        return {self.features[j].name: found} if found else {}

    # ------------------------------------------------------------ a text column

    def joined(self, x: np.ndarray, categories: list[list[str] | None]) -> np.ndarray:
        """`x` (encoded) with the text column's vector after the table's own columns: what
        the model takes; `x` itself for a table without text. The text column's own place
        holds 0 (the model reads the vector)."""
        j = self.text_index
        if j is None:
            return x
        texts = _texts(x[:, j], categories[j] or [])
        x[:, j] = 0.0
        parts = [x.astype("float32", copy=False)]
        for start in range(0, len(texts), TEXT_BATCH):
            parts.append(self.text.vectorize(texts[start : start + TEXT_BATCH]))
        if len(texts) == 0:
            parts.append(np.zeros((0, self.text.width), "float32"))
        return np.concatenate([parts[0], np.concatenate(parts[1:])], axis=1)

    @property
    def text_index(self) -> int | None:
        found = [j for j, f in enumerate(self.features) if f.type == "text"]
        return found[0] if found and self.text is not None else None

    def fit_text(self, settings, x: np.ndarray, categories: list[list[str] | None]) -> None:
        """Adapt the text column's vectorizer on the training rows `x` (codes)."""
        from dlcli.data.media.vocabulary import TextPreprocessing

        j = next(j for j, f in enumerate(self.features) if f.type == "text")
        texts = _texts(x[:, j], categories[j] or [])
        pieces = (texts[start : start + TEXT_BATCH] for start in range(0, len(texts), TEXT_BATCH))
        self.text = TextPreprocessing.fit(settings, pieces, self.features[j].name)

    def text_unknown_share(self, x: np.ndarray, categories: list[list[str] | None]) -> None:
        """Record the share of the test rows' tokens not in the vocabulary."""
        j = self.text_index
        if j is not None:
            texts = _texts(x[:, j], categories[j] or [])
            share = self.text.unknown_share(
                texts[start : start + TEXT_BATCH] for start in range(0, len(texts), TEXT_BATCH)
            )
            self.text.oov = {"test": share}

    # ------------------------------------------------------------ raw files

    def read(self, path: str, target: bool | None) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """A raw file in the training file's form as (model input, target or None, unseen).

        `target`: True for `evaluate --data` (the file must hold it), False for `predict`
        (a target column, if present, is ignored). Missing cells are filled as in training;
        with `on_missing: drop`, `evaluate` drops such rows and `predict` fills them (it
        answers for every row); with `error` they are refused.
        """
        names = [f.name for f in self.features]
        file = TableFile(path, self._form_of(path, names, target), list(self.missing))
        kinds = {f.name: "categorical" if f.type == "text" else f.type for f in self.features}
        on_missing = "fill" if (not target and self.on_missing == "drop") else self.on_missing
        table = read_table(file, names, self.target if target else None, kinds, on_missing)
        unseen = self.encode(table.x, table.categories)
        return self.joined(table.x, table.categories), table.y, unseen

    def _form_of(self, path: str, names: list[str], target: bool | None) -> TableFormat:
        trained = self.format
        if trained.kind == "parquet" or str(path).lower().endswith(PARQUET_SUFFIXES):
            fmt = inspect(path, kind="parquet")  # columns by name, whatever the run was trained on
        else:
            try:  # the training file's leading lines (data.skip_rows) are skipped here too
                fmt = inspect(
                    path,
                    trained.header,
                    None,
                    trained.delimiter,
                    self.missing,
                    skip_rows=trained.skip_rows,
                )
            except LeadLine as lead:
                raise ConfigError(
                    lead.problem(
                        "remove it: this run reads files in its training file's form "
                        f"(data.skip_rows: {trained.skip_rows})"
                    )
                ) from None
            fmt.decimal = trained.decimal
            if not trained.header:
                if len(fmt.names) == len(trained.names):
                    fmt.names = list(trained.names)
                elif len(fmt.names) == len(names) and not target:
                    fmt.names = list(names)
                else:
                    also = "" if target else f", or only the {len(names)} feature columns"
                    raise ConfigError(
                        Problem(
                            f"has {len(fmt.names)} columns; the run was trained on a file without a header and "
                            f"{len(trained.names)} columns, so give those{also}, in the same order",
                            where=path,
                        )
                    )
        wanted = [*names, *([self.target] if target else [])]
        absent = fmt.lacking(wanted)
        if absent is not None:
            raise ConfigError(
                Problem(
                    f"has no column '{absent}'{did_you_mean(absent, fmt.names)}; the run reads "
                    f"{', '.join(wanted)}",
                    where=path,
                )
            )
        return fmt

    # ------------------------------------------------------------ preprocessing.json

    def to_json(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "format": self.format.to_dict(),
            "target": self.target,
            "missing": self.missing,
            "on_missing": self.on_missing,
            "normalize": self.normalize,
            "rows": self.rows,
            "features": [
                {k: v for k, v in asdict(f).items() if v is not None} for f in self.features
            ],
            **({"unseen_in_test": self.unseen} if self.unseen else {}),
            **({"text": self.text.to_json()["text"]} if self.text is not None else {}),
        }

    @classmethod
    def from_json(cls, data, shown: str) -> TablePreprocessing:
        """From preprocessing.json; a ConfigError naming the file when it is damaged."""
        try:
            features = [Feature(**f) for f in data["features"]]
            prep = cls(
                TableFormat.from_dict(data["format"]),
                str(data["target"]),
                features,
                [str(m) for m in data["missing"]],
                str(data["on_missing"]),
                data["normalize"],
                data.get("rows", {}),
            )
            if "text" in data:
                from dlcli.data.media.vocabulary import TextPreprocessing

                prep.text = TextPreprocessing.from_json(data, shown)
            for f in features:
                if f.type == "text" and prep.text is None:
                    raise ValueError(f.name)
                if f.type not in ("numeric", "categorical", "text") or (
                    f.type == "categorical" and not isinstance(f.categories, list)
                ):
                    raise ValueError(f.name)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                Problem("preprocessing.json is damaged; restore it or retrain the run", where=shown)
            ) from None
        return prep

    def describe_unseen(self, unseen: dict, shown: str) -> str | None:
        """One line for stderr about values never seen in training, or None."""
        if not unseen:
            return None
        total = sum(sum(v.values()) for v in unseen.values())
        parts = []
        for column, values in unseen.items():
            top = sorted(values.items(), key=lambda kv: -kv[1])[:3]
            listed = ", ".join(f"{v!r} x{n}" for v, n in top) + (" ..." if len(values) > 3 else "")
            parts.append(f"'{column}': {listed}")
        return (
            f"{shown}: {total} cell{'s hold' if total != 1 else ' holds'} categories never seen in training, "
            f"encoded as unknown ({'; '.join(parts)})"
        )


def fit(info, x_train: np.ndarray, normalize) -> TablePreprocessing:
    """The preprocessing of a table (`TableInfo` from the source), fitted on the training
    split's rows `x_train` (categorical columns as codes into `info.categories`)."""
    features = []
    for j, kind in enumerate(info.kinds):
        name = info.feature_names[j]
        column = x_train[:, j]
        present = ~np.isnan(column)
        missing = int((~present).sum())
        if kind == "text":  # its vectorizer is fitted apart (`fit_text`)
            features.append(Feature(name, "text", missing))
            continue
        if kind == "numeric":
            values = column[present].astype("float64")
            stats = (
                (
                    float(values.mean()),
                    float(values.std()),
                    float(values.min()),
                    float(values.max()),
                )
                if len(values)
                else (0.0, 0.0, 0.0, 0.0)
            )
            features.append(_numeric(name, missing, stats))
            continue
        counts = np.bincount(column[present].astype("int64"), minlength=len(info.categories[j]))
        features.append(_categorical(name, missing, info.categories[j], counts))
    return _preprocessing(info, features, normalize)


class TableCounts:
    """`fit`'s statistics gathered block by block (`data.streaming`): per numeric column the
    count, mean, sum of squared deviations (merged exactly, Chan's formula, in float64),
    minimum and maximum of the present cells; per categorical column how often each code
    occurs (`codes`, the last entry: missing); per column the missing cells."""

    def __init__(self, kinds: list[str], categories: list[list[str] | None]):
        self.numeric = np.array([j for j, k in enumerate(kinds) if k == "numeric"], dtype="int64")
        width = len(self.numeric)
        self.count, self.mean, self.m2 = np.zeros(width), np.zeros(width), np.zeros(width)
        self.low, self.high = np.full(width, np.inf), np.full(width, -np.inf)
        self.missing = np.zeros(len(kinds), dtype="int64")
        self.codes = [
            np.zeros(len(c) + 1, dtype="int64") if k == "categorical" else None
            for k, c in zip(kinds, categories)
        ]

    def add(self, x: np.ndarray) -> None:
        """Count the rows `x` (features as `read_table` gives them)."""
        if not len(x):
            return
        self.missing += np.isnan(x).sum(axis=0)
        for j, counts in enumerate(self.codes):
            if counts is not None:
                counts += np.bincount(_code_index(x[:, j], len(counts) - 1), minlength=len(counts))
        if not len(self.numeric):
            return
        values = x[:, self.numeric].astype("float64")
        present = ~np.isnan(values)
        n = present.sum(axis=0).astype("float64")
        seen = n > 0
        b_mean = np.where(present, values, 0.0).sum(axis=0) / np.maximum(n, 1)
        b_m2 = np.square(np.where(present, values - b_mean, 0.0)).sum(axis=0)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = np.where(seen, self.mean + delta * n / np.maximum(total, 1), self.mean)
        self.m2 = np.where(
            seen, self.m2 + b_m2 + np.square(delta) * self.count * n / np.maximum(total, 1), self.m2
        )
        self.count = total
        self.low = np.minimum(self.low, np.where(present, values, np.inf).min(axis=0))
        self.high = np.maximum(self.high, np.where(present, values, -np.inf).max(axis=0))

    def fit(self, info, normalize) -> TablePreprocessing:
        """The preprocessing `fit` makes of the same rows, to float rounding."""
        features, numeric = [], {int(j): i for i, j in enumerate(self.numeric)}
        for j, kind in enumerate(info.kinds):
            name, missing = info.feature_names[j], int(self.missing[j])
            if kind == "numeric":
                i = numeric[j]
                stats = (
                    (
                        float(self.mean[i]),
                        float(np.sqrt(self.m2[i] / self.count[i])),
                        float(self.low[i]),
                        float(self.high[i]),
                    )
                    if self.count[i]
                    else (0.0, 0.0, 0.0, 0.0)
                )
                features.append(_numeric(name, missing, stats))
            else:
                features.append(_categorical(name, missing, info.categories[j], self.codes[j][:-1]))
        return _preprocessing(info, features, normalize)


def _texts(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """A text column's codes as the texts (a missing cell: the empty text)."""
    lookup = np.array([*names, ""], dtype=object)
    return lookup[_code_index(codes, len(names))]


def _code_index(codes: np.ndarray, size: int) -> np.ndarray:
    """Category codes as indices, a missing one (NaN) as `size`."""
    return np.where(np.isnan(codes), size, codes).astype("int64")


def _numeric(name: str, missing: int, stats: tuple) -> Feature:
    return Feature(name, "numeric", missing, *[_finite(v) for v in stats])


def _categorical(name: str, missing: int, names: list[str], counts: np.ndarray) -> Feature:
    """The vocabulary of a column: its categories in the training rows, most frequent first."""
    order = sorted(
        (k for k in range(len(names)) if counts[k]), key=lambda k: (-counts[k], names[k])
    )
    kept = order[:MAX_CATEGORIES]
    size = len(kept) + 1
    embedding = len(kept) > ONE_HOT_MAX
    return Feature(
        name,
        "categorical",
        missing,
        categories=[names[k] for k in kept],
        counts=[int(counts[k]) for k in kept],
        encoding="embedding" if embedding else "one_hot",
        embedding_dim=min(50, round(1.6 * size**0.56)) if embedding else None,
        dropped_categories=len(order) - len(kept),
    )


def _preprocessing(info, features: list[Feature], normalize) -> TablePreprocessing:
    return TablePreprocessing(
        info.format,
        info.target,
        features,
        list(info.missing_markers),
        info.on_missing,
        normalize,
        dict(info.rows),
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
