"""The value types every config section is built from: `Section` (unknown keys are
errors), `KerasObject` (a Keras class by name with its arguments), and the strict numbers,
`auto`-or-value fields and `data.normalize`, each with the JSON Schema it shows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PositiveInt,
    Strict,
    WithJsonSchema,
    model_validator,
)

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
