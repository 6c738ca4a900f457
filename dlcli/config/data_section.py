"""The `data:` section: which source, its files, columns and keys, how it is split. The
names of the sources by kind (scikit-learn's, Keras's, tables, NPZ, media folders) are
`dlcli.config.sources`'.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dlcli.config.fields import AutoOrBool, Count, ImageSize, Normalize, Number, Section
from dlcli.config.sources import (
    FILE_SOURCES,
    KERAS_SOURCES,
    MEDIA_KEYS,
    MEDIA_SOURCES,
    SKLEARN_SOURCES,
    TABLE_SOURCES,
)

IMAGE_NORMALIZE = 255.0  # data.normalize for images when the config does not set it
TABLE_TEXT_TOKENS = 2000  # a table's text column: tf_idf over this many tokens by default
# Cells that hold no value, as tables write them; `data.missing` replaces the list.
MISSING_MARKERS = ["", "?", "NA", "N/A", "NaN", "nan", "null", "None"]


class NpzKeys(Section):
    x_train: str = "x_train"
    y_train: str = "y_train"
    x_test: str = "x_test"
    y_test: str = "y_test"


class FoldConfig(Section):
    """The fold of a k-fold cross-validation this run is (`dlcli cv` sets it): the training
    data (the test split held out) is cut into `of` folds, stratified for classes and seeded,
    and fold `index` is the validation data; `validation_split` does not apply."""

    index: Count = Field(ge=0, description="0-based: the fold held out for validation")
    of: Count = Field(ge=2, description="how many folds")

    @model_validator(mode="after")
    def _in_range(self):
        if self.index >= self.of:
            raise ValueError(f"index {self.index} is not a fold of {self.of} (0 to {self.of - 1})")
        return self


def _delimiter(value):
    if value == "auto" or (isinstance(value, str) and len(value) == 1 and value not in '"\r\n'):
        return value
    raise ValueError(
        f"expected 'auto' or one character such as ',' ';' '|' \"\\t\" (' ' for runs of spaces), got {value!r}"
    )


Delimiter = Annotated[
    str,
    PlainValidator(_delimiter),
    WithJsonSchema(
        {"anyOf": [{"const": "auto"}, {"type": "string", "minLength": 1, "maxLength": 1}]}
    ),
]


def _column(value):
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"expected a column name or a 0-based position (-1: the last), got {value!r}")


Column = Annotated[
    str | int,
    PlainValidator(_column),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
]


class TextConfig(Section):
    """`data.text`: the `TextVectorization` layer adapted on the training split only."""

    max_tokens: Count = Field(
        20000, ge=3, description="the vocabulary's size, the padding and unknown tokens included"
    )
    output_mode: Literal["int", "multi_hot", "tf_idf", "count"] = Field(
        "int",
        description="int: token ids (for Embedding); multi_hot, count, tf_idf: one number "
        "per vocabulary entry (for Dense)",
    )
    sequence_length: Count = Field(
        200, ge=1, description="int: token ids per document, cut or padded to this length"
    )
    ngrams: Count = Field(1, ge=1, le=5, description="1: words; 2: words and word pairs; ...")
    standardize: Literal["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"] = (
        Field("lower_and_strip_punctuation", description="what is done to the text first")
    )


class FeatureConfig(Section):
    """A table column used as a feature, with its type given instead of inferred."""

    name: Column = Field(description="a column name, or its 0-based position")
    type: Literal["auto", "numeric", "categorical", "image", "text", "audio"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return (
            {"name": value}
            if isinstance(value, (str, int)) and not isinstance(value, bool)
            else value
        )


class DataConfig(Section):
    source: Literal[SKLEARN_SOURCES + KERAS_SOURCES + FILE_SOURCES] = Field(
        description="a bundled scikit-learn dataset, a keras.datasets one, csv / parquet / npz, "
        "or images (a folder with one sub-folder per class, or a table of image paths)"
    )
    path: str | None = Field(
        None,
        description="csv/parquet/npz file, or the images' folder or table; relative to the "
        "config's folder",
    )
    test_path: str | None = Field(
        None,
        description="csv/parquet: a separate test file with the same columns; images: a "
        "test folder (or table) in the same layout",
    )
    target: Column | None = Field(
        None, description="csv/parquet: the target column, by name or 0-based position (-1: last)"
    )
    features: list[FeatureConfig] | None = Field(
        None,
        description="csv/parquet: names, positions or {name, type}; default every other column",
    )
    header: AutoOrBool = Field("auto", description="csv: does the first row name the columns?")
    skip_rows: Count = Field(
        0,
        ge=0,
        description="csv: leading lines to skip before the header or the first row, such as the "
        "line counting rows and columns that scikit-learn's CSVs begin with; the test file, "
        "evaluate --data and predict skip them too",
    )
    columns: list[str] | None = Field(
        None, description="csv: names for the file's columns (a file without a header)"
    )
    delimiter: Delimiter = Field(
        "auto",
        description="csv: auto (sniffed among , ; tab | and runs of spaces) or the character",
    )
    missing: list[str] = Field(
        default_factory=lambda: list(MISSING_MARKERS),
        description="csv/parquet: cells that hold no value",
    )
    on_missing: Literal["fill", "drop", "error"] = Field(
        "fill", description="fill (training mean, or a 'missing' category), drop the row, or error"
    )
    keys: NpzKeys = Field(default_factory=NpzKeys, description="npz only: the array names")
    task: Literal["auto", "classification", "regression"] = "auto"
    validation_split: Number = Field(0.2, ge=0, lt=1, description="fraction of the training data")
    test_split: Number = Field(0.2, gt=0, lt=1, description="when the source has no test set")
    scale_target: AutoOrBool = Field(
        "auto",
        description="regression: standardise the target for training (training-split mean and "
        "std), undone in the model's output; auto: for every regression",
    )
    fold: FoldConfig | None = Field(
        None, description="set by dlcli cv: the k-fold fold this run validates on"
    )
    normalize: Normalize = Field(
        "standard",
        description="standard (training mean and std), minmax, none, or a number to divide by; "
        "images: 255 unless set",
    )
    image_size: ImageSize | None = Field(
        None,
        description="images: every image is resized to [height, width]; default: the size "
        "they all share",
    )
    color_mode: Literal["rgb", "grayscale", "rgba"] = Field(
        "rgb", description="images: the channels each image is converted to"
    )
    on_bad_file: Literal["error", "skip"] = Field(
        "error",
        description="images, text, audio: a file that cannot be read (not an image, not "
        "UTF-8, not a PCM WAV) is an error naming it, or is skipped (and listed in run.json)",
    )
    text: TextConfig | None = Field(
        None,
        description="text: the vectorizer adapted on the training split (default: int ids, "
        "20000 tokens, 200 per document)",
    )
    sampling_rate: Count | None = Field(
        None,
        ge=1,
        le=384_000,
        description="audio: samples per second every recording is resampled to; default: the "
        "rate they all share",
    )
    output_sequence_length: Count | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="audio: samples per recording, cut or padded with silence; default: the "
        "longest recording's",
    )
    cache_dir: str | None = Field(None, description="keras.datasets cache; default ~/.keras")
    streaming: AutoOrBool = Field(
        "auto",
        description="csv/parquet/npz: read the files a piece at a time instead of whole "
        "(auto: when they are larger than a quarter of this machine's memory)",
    )

    @model_validator(mode="after")
    def _source_needs(self):
        wrong = []
        table = self.source in TABLE_SOURCES
        media = self.source in MEDIA_SOURCES
        if self.source in FILE_SOURCES and not self.path:
            wrong.append(
                f"source '{self.source}' needs 'path:' "
                + (
                    "(a folder with one sub-folder per class, or a table of paths)"
                    if media
                    else "(the data file)"
                )
            )
        if table and self.target is None:
            wrong.append(
                f"source '{self.source}' needs 'target:' (the target column's name, "
                "or its 0-based position: -1 for the last)"
            )
        if self.source not in FILE_SOURCES:
            for key in ("path", "test_path", "target", "features"):
                if getattr(self, key) is not None:
                    wrong.append(
                        f"'{key}' is only for csv/parquet/npz sources, not '{self.source}'"
                    )
        if self.source == "npz" and (self.target is not None or self.features or self.test_path):
            wrong.append("npz takes arrays by 'keys:', not target/features/test_path")
        if self.source != "csv" and not (media and str(self.path).lower().endswith(".csv")):
            set_here = self._changed("header", "columns", "delimiter", "skip_rows")
            if set_here:
                wrong.append(f"{', '.join(set_here)}: only for csv tables, not '{self.source}'")
        text_feature = table and any(f.type == "text" for f in self.features or [])
        for kind, keys in MEDIA_KEYS.items():
            own = self.source == kind or (kind == "text" and text_feature)
            set_here = self._changed(*keys) if not own else []
            if set_here:
                wrong.append(f"{', '.join(set_here)}: only for {kind}, not '{self.source}'")
        if not media:
            set_here = self._changed("on_bad_file")
            if set_here:
                wrong.append(f"on_bad_file: only for images, text or audio, not '{self.source}'")
        if self.source == "images" and "normalize" not in self.model_fields_set:
            self.normalize = IMAGE_NORMALIZE
        if self.source in ("text", "audio"):
            if "normalize" in self.model_fields_set and self.normalize != "none":
                wrong.append(
                    f"normalize: {self.source} goes into the model as it is (token ids or "
                    "vectors; waveforms in -1..1); remove data.normalize"
                )
            self.normalize = "none"
        if self.source == "text" and self.text is None:
            self.text = TextConfig()
        if text_feature:
            if self.text is None:
                self.text = TextConfig(output_mode="tf_idf", max_tokens=TABLE_TEXT_TOKENS)
            if self.text.output_mode == "int":
                wrong.append(
                    "text.output_mode int gives token ids, which cannot sit beside a table's "
                    "other columns; use multi_hot, count or tf_idf (or data.source: text for "
                    "the text column alone)"
                )
            if sum(f.type == "text" for f in self.features) > 1:
                wrong.append("a table holds one text column; give the others another type")
        if not table:
            set_here = self._changed("missing", "on_missing")
            if set_here:
                wrong.append(
                    f"{', '.join(set_here)}: only for csv/parquet tables, not '{self.source}'"
                )
        if wrong:
            raise ValueError("; ".join(wrong))
        return self

    def _changed(self, *keys: str) -> list[str]:
        """The keys among `keys` whose value is not the default (a resolved config has them all)."""
        fields = type(self).model_fields
        return [
            key
            for key in keys
            if getattr(self, key) != fields[key].get_default(call_default_factory=True)
        ]

    @field_validator("columns")
    @classmethod
    def _distinct_columns(cls, value):
        if value is not None:
            seen = set()
            for name in value:
                if name in seen:
                    raise ValueError(
                        f"column '{name}' is named twice; give each column its own name"
                    )
                seen.add(name)
        return value
