"""The config schema: pydantic models of every section, and the JSON Schema.

Reading the YAML (with the line of each key) and applying `--set` is `dlcli.config.text`'s
work, and `dlcli.config.load` validates the result against these models, placing each
schema error at its line. It knows nothing of Keras: names such as `type: Dense` or
`optimizer: adam` are checked later against Keras's own registries
(`dlcli.runtime.keras_names`).

Example:
    >>> Config.model_validate({"data": {"source": "digits"}, "model": {"layers": [{"type": "Dense"}]}})
    >>> config_schema()["title"]
    'dlcli config'
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PositiveInt,
    PrivateAttr,
    Strict,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dlcli.config.space import ENTRY_SCHEMA, kind_of
from dlcli.config.text import format_path
from dlcli.errors import Problem, did_you_mean

SKLEARN_SOURCES = ("digits", "iris", "wine", "breast_cancer", "diabetes")
KERAS_SOURCES = ("mnist", "fashion_mnist", "cifar10", "cifar100")
TABLE_SOURCES = ("csv", "parquet")
MEDIA_SOURCES = ("images",)  # a folder of files (one sub-folder per class), or a table of paths
FILE_SOURCES = (*TABLE_SOURCES, "npz", *MEDIA_SOURCES)
IMAGE_NORMALIZE = 255.0  # data.normalize for images when the config does not set it
# Cells that hold no value, as tables write them; `data.missing` replaces the list.
MISSING_MARKERS = ["", "?", "NA", "N/A", "NaN", "nan", "null", "None"]
RUN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_NAME = 200  # a run folder is `NAME-YYYYmmdd-HHMMSS`; file names end at 255 bytes

# Numbers are numbers: `epochs: true` or `epochs: "10"` is a mistake, not 1 or 10.
Count = Annotated[int, Strict()]
PositiveCount = Annotated[PositiveInt, Strict()]
Number = Annotated[float, Strict(), AllowInfNan(False)]  # an int is a number too; nan/inf are not


def _auto_or(kind: str, check):
    """A field type that takes the word 'auto' or a value `check` accepts, with one error."""

    def validate(value):
        if value == "auto":
            return value
        try:
            return check(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected 'auto' or {kind}, got {value!r}") from None

    return validate


def _bool(value):
    if isinstance(value, bool):
        return value
    raise ValueError


def _positive_int(value):
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError


def _normalize(value):
    if value in ("standard", "minmax", "none"):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(
        f"expected standard, minmax, none or a positive number to divide by, got {value!r}"
    )


AutoOrBool = Annotated[
    Literal["auto"] | bool,
    PlainValidator(_auto_or("true/false", _bool)),
    WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "boolean"}]}),
]
AutoOrPositiveInt = Annotated[
    Literal["auto"] | int,
    PlainValidator(_auto_or("a positive integer", _positive_int)),
    WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1}]}),
]
MAX_IMAGE_SIDE = 8192  # pixels: a larger image_size is a typo or a batch that cannot fit
ImageSize = Annotated[
    list[Annotated[int, Strict(), Field(gt=0, le=MAX_IMAGE_SIDE)]],
    Field(min_length=2, max_length=2),
]
Normalize = Annotated[
    Literal["standard", "minmax", "none"] | float,
    PlainValidator(_normalize),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": ["standard", "minmax", "none"]},
                {"type": "number", "exclusiveMinimum": 0},
            ]
        }
    ),
]


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class KerasObject(BaseModel):
    """A Keras class by name (`type:`), with its keyword arguments passed through.

    A bare string is the same as `{type: name}`: `optimizer: adam`.
    """

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="a Keras class or alias, case-insensitive")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"type": value} if isinstance(value, str) else value

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


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


class FeatureConfig(Section):
    """A table column used as a feature, with its type given instead of inferred."""

    name: Column = Field(description="a column name, or its 0-based position")
    type: Literal["auto", "numeric", "categorical", "image"] = "auto"

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
        description="images: a file that is not a readable image is an error naming it, or "
        "is skipped (and listed in run.json)",
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
        if self.source != "images":
            set_here = self._changed("image_size", "color_mode", "on_bad_file")
            if set_here:
                wrong.append(f"{', '.join(set_here)}: only for images, not '{self.source}'")
        elif "normalize" not in self.model_fields_set:
            self.normalize = IMAGE_NORMALIZE
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


class ModelConfig(Section):
    input_shape: list[PositiveCount] | None = Field(None, description="default: from the data")
    layers: list[KerasObject] = Field(
        min_length=1,
        description="a keras.Sequential stack; a last Dense without units gets one per class",
    )


class CompileConfig(Section):
    optimizer: KerasObject = Field(default_factory=lambda: KerasObject(type="adam"))
    loss: KerasObject | None = Field(
        None, description="default: sparse_categorical_crossentropy, or mean_squared_error"
    )
    metrics: list[KerasObject] = Field(default_factory=list)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _default_optimizer(cls, value):
        if isinstance(value, dict) and "type" not in value:
            return {"type": "adam", **value}  # `--set compile.optimizer.learning_rate=..`
        return value


class EarlyStoppingConfig(Section):
    monitor: str = "val_loss"
    patience: Count = Field(3, ge=0)
    min_delta: Number = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best_weights: StrictBool = True
    start_from_epoch: Count = Field(0, ge=0)


class ReduceLROnPlateauConfig(Section):
    monitor: str = "val_loss"
    factor: Number = Field(0.5, gt=0, lt=1)
    patience: Count = Field(2, ge=0)
    min_delta: Number = Field(1e-4, ge=0)
    cooldown: Count = Field(0, ge=0)
    min_lr: Number = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"


def _class_weight(value):
    """`training.class_weight`: 'balanced', or a weight (a finite number, 0 or more) per
    class label, kept with the labels as written; which labels exist is known only once the
    data is loaded (`dlcli.training.class_weight`)."""
    if value is None or value == "balanced":
        return value
    if not isinstance(value, dict):
        hint = did_you_mean(value, ["balanced"]) if isinstance(value, str) else ""
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError
            f"expected 'balanced' or a weight per class label, such as {{'>50K': 3, '<=50K': 1}}; "
            f"got {value!r}{hint}"
        )
    if not value:
        raise ValueError("the mapping names no class; give a weight per label, or leave it out")
    weights = {}
    for label, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError
                f"the weight of class {label!r} must be a number, got {weight!r}"
            )
        number = float(weight) if isinstance(weight, float) or abs(weight) < 2**1000 else math.inf
        if not math.isfinite(number) or number < 0:
            raise ValueError(
                f"the weight of class {label!r} must be a finite number, 0 or more, got {weight!r}"
            )
        weights[label] = number
    return weights


ClassWeight = Annotated[
    Any,
    PlainValidator(_class_weight),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "balanced"},
                {
                    "type": "object",
                    "additionalProperties": {"type": "number", "minimum": 0},
                    "minProperties": 1,
                },
                {"type": "null"},
            ]
        }
    ),
]


class TrainingConfig(Section):
    epochs: PositiveCount = 10
    batch_size: PositiveCount = 32
    shuffle: StrictBool = True
    early_stopping: EarlyStoppingConfig | None = None
    reduce_lr_on_plateau: ReduceLROnPlateauConfig | None = None
    callbacks: list[KerasObject] = Field(
        default_factory=list, description="more keras.callbacks by name, with their arguments"
    )
    class_weight: ClassWeight = Field(
        None,
        description="classification: 'balanced' (scikit-learn's, on the training split) or "
        "a weight per class label (others 1); weights the training loss only",
    )


class RuntimeConfig(Section):
    backend: Literal["auto", "tensorflow", "jax", "torch"] = Field(
        "auto",
        description="auto: the backend that trains this model fastest among those installed (run.json says which and why)",
    )
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    jit_compile: AutoOrBool = "auto"
    steps_per_execution: AutoOrPositiveInt = "auto"
    distribution: Literal["auto", "none", "mirrored", "data_parallel"] = "auto"
    deterministic: StrictBool = Field(False, description="op determinism: same seed, same numbers")


class OutputConfig(Section):
    tensorboard: StrictBool = True
    plots: StrictBool = True
    baselines: Literal["auto", "majority", "none"] = Field(
        "auto",
        description="test scores without deep learning in metrics.json: auto (majority, and "
        "gradient boosting on a table in memory of at most 1,000,000 training rows) | majority | none",
    )


def _space_entry(value):
    """One `sweep.space` entry, checked by its kind (`dlcli.config.space`) and kept as written."""
    kind_of(value)
    return value


SpaceEntry = Annotated[dict, PlainValidator(_space_entry), WithJsonSchema(ENTRY_SCHEMA)]


class SweepConfig(Section):
    """`dlcli sweep`: what to search and how. `dlcli train` ignores this section."""

    metric: str | None = Field(
        None, description="a column of history.csv; default: val_loss, or loss without validation"
    )
    direction: Literal["auto", "max", "min"] = Field(
        "auto", description="auto: the metric's own direction"
    )
    trials: PositiveCount = Field(20, description="trials this process runs")
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "none"] = Field(
        "median",
        description="median: stop a trial that trails the others' median at the same epoch",
    )
    parallel: PositiveCount = Field(1, description="trials at once on this machine")
    space: dict[str, SpaceEntry] = Field(
        min_length=1, description="dotted config keys, as --set takes them, each with its range"
    )


class Config(Section):
    """The whole validated config. `load_config` makes one from a YAML file."""

    name: str | None = Field(None, description="run name; default: the config file's stem")
    seed: Count = Field(42, ge=0, lt=2**32, description="numpy takes seeds in [0, 2**32)")
    data: DataConfig
    model: ModelConfig
    compile: CompileConfig = Field(default_factory=CompileConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    sweep: SweepConfig | None = Field(None, description="dlcli sweep only: the search")

    _source: str = PrivateAttr("<config>")
    _lines: dict = PrivateAttr(default_factory=dict)
    _overridden: dict = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value):
        if value is not None and len(value) > MAX_NAME:
            raise ValueError(
                f"the run name has {len(value)} characters; shorten it to at most {MAX_NAME} "
                "(it names the run folder)"
            )
        if value is not None and (not RUN_NAME.match(value) or set(value) == {"."}):
            raise ValueError(f"run name {value!r} may hold only letters, digits, '.', '_' and '-'")
        return value

    def monitor_problems(self) -> list[Problem]:
        """Callbacks that watch a val_ metric when there is no validation split."""
        if self.data.validation_split > 0:
            return []
        return [
            self.problem(
                ("training", key, "monitor"),
                f"monitors '{cb.monitor}' but data.validation_split is 0; "
                "set a validation_split or monitor 'loss'",
            )
            for key in ("early_stopping", "reduce_lr_on_plateau")
            if (cb := getattr(self.training, key)) is not None and cb.monitor.startswith("val_")
        ]

    def streaming_problems(self) -> list[Problem]:
        """`data.streaming: true` on a source that is not a file (nothing to read in parts)."""
        if self.data.streaming is not True or self.data.source in FILE_SOURCES:
            return []
        return [
            self.problem(
                ("data", "streaming"),
                (
                    f"'{self.data.source}' is loaded whole, not read from a file: only csv, parquet and npz "
                    "sources stream; set data.streaming: auto (or false), or save the data as one of those files"
                ),
            )
        ]

    def where(self, path: tuple) -> str:
        """'file:line' (or the `--set` that gave it) for a path into the config."""
        for end in range(len(path), -1, -1):
            prefix = tuple(path[:end])
            if prefix in self._overridden:
                return f"--set {self._overridden[prefix]}"
            if prefix in self._lines:
                return f"{self._source}:{self._lines[prefix]}"
        return self._source

    def problem(self, path: tuple, message: str) -> Problem:
        return Problem(message, where=self.where(path), path=format_path(path))

    def to_dict(self) -> dict:
        """The resolved config as plain data, every default filled in: what a run trains
        (the `sweep:` section, the search around it, is left out)."""
        return self.model_dump(mode="json", exclude={"sweep"})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict:
    """The JSON Schema of a dlcli config (`dlcli schema`), for editors and CI checks."""
    generated = Config.model_json_schema()
    keras_object = generated.get("$defs", {}).get("KerasObject")
    if keras_object is not None:
        # The config accepts a bare name wherever it takes a Keras object (`optimizer: adam`).
        generated["$defs"]["KerasObject"] = {
            "description": keras_object.pop("description", ""),
            "anyOf": [
                {"type": "string", "description": "a Keras class or alias, case-insensitive"},
                keras_object,
            ],
        }
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "dlcli config",
        **{k: v for k, v in generated.items() if k != "title"},
    }
