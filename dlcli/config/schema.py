"""The config schema: pydantic models of every section, and the JSON Schema. The value
types are `dlcli.config.fields`'s, the `data:` section is `dlcli.config.data_section`'s.

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
    Field,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from dlcli.config.data_section import (  # the data section's names, importable from here
    MISSING_MARKERS,
    DataConfig,
    FeatureConfig,
)
from dlcli.config.fields import (
    AutoOrBool,
    AutoOrPositiveInt,
    Count,
    KerasObject,
    Number,
    PositiveCount,
    Section,
)
from dlcli.config.sources import (  # the source names, importable from here
    FILE_SOURCES,
    KERAS_SOURCES,
    MEDIA_SOURCES,
    SKLEARN_SOURCES,
    TABLE_SOURCES,
)
from dlcli.config.space import ENTRY_SCHEMA, kind_of
from dlcli.config.text import format_path
from dlcli.errors import Problem, did_you_mean

RUN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_NAME = 200  # a run folder is `NAME-YYYYmmdd-HHMMSS`; file names end at 255 bytes


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


class MlflowConfig(Section):
    """`output.mlflow` as a mapping: where the runs go."""

    tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="an MLflow tracking URI (http://host:5000, sqlite:///path/mlflow.db, "
        "postgresql://...); default: $MLFLOW_TRACKING_URI, else sqlite:///<runs dir>/mlflow.db",
    )
    experiment: str | None = Field(
        None, min_length=1, max_length=500, description="the experiment (default: the run's name)"
    )


class OutputConfig(Section):
    tensorboard: StrictBool = True
    plots: StrictBool = True
    mlflow: StrictBool | MlflowConfig = Field(
        False,
        description="log the run to MLflow: false | true | {tracking_uri, experiment} "
        "(needs the mlflow extra)",
    )

    @field_validator("mlflow", mode="before")
    @classmethod
    def _mlflow_form(cls, value):
        if isinstance(value, (bool, MlflowConfig)):
            return value
        if isinstance(value, dict):  # one message, not one per member of the union
            unknown = sorted(set(value) - set(MlflowConfig.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown key {unknown[0]!r} (expected tracking_uri and/or experiment)"
                )
            try:
                return MlflowConfig.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(
                    f"{'.'.join(map(str, first['loc']))}: {first['msg']}, got {first.get('input')!r}"
                ) from None
        raise ValueError(
            f"expected true, false or {{tracking_uri: URI, experiment: NAME}}, got {value!r}"
        )

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


__all__ = [
    "FILE_SOURCES",
    "KERAS_SOURCES",
    "MAX_NAME",
    "MEDIA_SOURCES",
    "MISSING_MARKERS",
    "SKLEARN_SOURCES",
    "TABLE_SOURCES",
    "Config",
    "DataConfig",
    "FeatureConfig",
    "KerasObject",
    "RuntimeConfig",
    "Section",
    "SweepConfig",
    "config_schema",
]
