"""The kinds of a sweep's search space: one small class per kind, for the schema and the sampler.

A `sweep.space` entry is a YAML mapping with one kind and, for some kinds, a `step`:

    {choice: [8, 16, 32]}        a value from a list             `Choice`
    {uniform: [0.0, 0.5]}        a number in a range (step: ...) `Uniform`
    {log_uniform: [1e-4, 1e-2]}  a number on a log scale         `LogUniform`
    {int: [16, 64], step: 16}    a whole number (step: ...)      `Int`
    {log_int: [8, 256]}          a whole number on a log scale   `LogInt`

Each class knows its entry's checks (`from_entry` raises ValueError with the message the
schema reports at the entry's line), its JSON Schema fragment, its Optuna distribution, its grid
values (None when the range is endless) and the values `dlcli sweep` tries before any trial.
`KINDS` is the registry: the schema (`dlcli.config.schema.SweepConfig`) and the tuning stage
(`dlcli.tuning`) both go through it. The config keeps each entry as the plain mapping the
user wrote (sweep.json and the study store it so); `kind_of` turns one into its kind.

This module is not the search: Optuna is imported only inside `distribution`, and nothing
here runs a trial.

Example:
    >>> kind_of({"int": [16, 64], "step": 16}).grid_values()
    [16, 32, 48, 64]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from dlcli.errors import did_you_mean

FORMS = (
    "{choice: [a, b]}, {uniform: [low, high]}, {log_uniform: [low, high]}, {int: [low, high]} "
    "or {log_int: [low, high]}"
)
# Why a grid sampler refuses a key (`dlcli sweep`, before any trial): its kind has no finite list.
ENDLESS_GRID = (
    "the grid sampler takes a finite list of values: give this key a choice, an int range, or a "
    "uniform range with a step; or use sampler: tpe"
)


def is_number(value, integer: bool = False) -> bool:
    """A finite number (a whole one with `integer`); true/false is not a number."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (
        not integer and isinstance(value, float) and math.isfinite(value)
    )


class Kind:
    """One kind of space entry. Subclasses set `name` and `schema` and implement the rest."""

    name: ClassVar[str]
    schema: ClassVar[dict]  # the JSON Schema of the value under the kind's key

    @classmethod
    def from_entry(cls, entry: dict) -> Kind:
        """The kind's value, checked, from an entry that holds this kind's key (ValueError: why not)."""
        raise NotImplementedError

    def distribution(self):
        """Optuna's distribution for this entry (imports Optuna)."""
        raise NotImplementedError

    def grid_values(self) -> list | None:
        """Every value the grid sampler tries, or None for a range without a finite list."""
        return None

    def candidates(self) -> list:
        """The values tried against the schema and Keras before any trial: every choice, or both ends."""
        raise NotImplementedError


@dataclass(frozen=True)
class Choice(Kind):
    """`{choice: [a, b, ...]}`: one of a list of plain values."""

    name: ClassVar[str] = "choice"
    schema: ClassVar[dict] = {
        "type": "array",
        "minItems": 1,
        "items": {"type": ["string", "number", "boolean", "null"]},
    }

    values: list

    @classmethod
    def from_entry(cls, entry: dict) -> Choice:
        values = entry[cls.name]
        if not isinstance(values, list) or not values:
            raise ValueError(f"choice takes a non-empty list of values, got {values!r}")
        odd = [v for v in values if not (v is None or isinstance(v, (str, bool, int, float)))]
        if odd:
            raise ValueError(
                f"choice takes plain values (numbers, text, true/false, null), got {odd[0]!r}"
            )
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"choice lists a value twice: {values!r}; list each once")
        if entry.get("step") is not None:
            raise ValueError("step is for uniform and int ranges, not choice")
        return cls(list(values))

    def distribution(self):
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.values)

    def grid_values(self) -> list:
        return list(self.values)

    def candidates(self) -> list:
        return list(self.values)


@dataclass(frozen=True)
class Range(Kind):
    """`{KIND: [low, high]}`: a number between two bounds, both included; the base of the
    four numeric kinds, which differ in whole numbers, log scale and `step`."""

    integer: ClassVar[bool] = False
    log: ClassVar[bool] = False

    low: float
    high: float
    step: float | None = None

    @classmethod
    def from_entry(cls, entry: dict) -> Range:
        kind, bounds, step = cls.name, entry[cls.name], entry.get("step")
        what = "whole numbers" if cls.integer else "numbers"
        if not (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(is_number(b, cls.integer) for b in bounds)
        ):
            raise ValueError(f"{kind} takes [low, high], two {what}, got {bounds!r}")
        low, high = bounds
        if low >= high:
            raise ValueError(f"{kind}: low must be below high, got [{low}, {high}]")
        if cls.log and low <= 0:
            raise ValueError(f"{kind} needs low > 0 (a log scale), got {low}")
        if step is not None:
            if cls.log:
                raise ValueError(f"step is for uniform and int ranges, not {kind}")
            if not is_number(step, cls.integer) or step <= 0:
                raise ValueError(
                    f"step must be a positive {'whole ' if cls.integer else ''}number, got {step!r}"
                )
            count = (high - low) / step
            if abs(count - round(count)) > 1e-9:
                raise ValueError(
                    f"{kind}: high - low ({high - low:g}) is not a multiple of step {step}; "
                    "choose bounds a whole number of steps apart"
                )
        return cls(low, high, step)

    def candidates(self) -> list:
        return [self.low, self.high]


class Uniform(Range):
    """`{uniform: [low, high]}`, optionally with `step`: any number between, or every step."""

    name: ClassVar[str] = "uniform"
    schema: ClassVar[dict] = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 2,
    }

    def distribution(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(
            float(self.low), float(self.high), step=None if self.step is None else float(self.step)
        )

    def grid_values(self) -> list | None:
        if self.step is None:
            return None
        count = round((self.high - self.low) / self.step)
        return [round(self.low + i * self.step, 12) for i in range(count + 1)]


class LogUniform(Range):
    """`{log_uniform: [low, high]}`: a positive number, drawn evenly on a log scale."""

    name: ClassVar[str] = "log_uniform"
    schema: ClassVar[dict] = {
        "type": "array",
        "items": {"type": "number", "exclusiveMinimum": 0},
        "minItems": 2,
        "maxItems": 2,
    }
    log: ClassVar[bool] = True

    def distribution(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high), log=True)


class Int(Range):
    """`{int: [low, high]}`, optionally with a whole `step`: a whole number between."""

    name: ClassVar[str] = "int"
    schema: ClassVar[dict] = {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 2,
    }
    integer: ClassVar[bool] = True

    def distribution(self):
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, step=int(self.step or 1))

    def grid_values(self) -> list:
        return list(range(self.low, self.high + 1, int(self.step or 1)))


class LogInt(Range):
    """`{log_int: [low, high]}`: a positive whole number, drawn evenly on a log scale."""

    name: ClassVar[str] = "log_int"
    schema: ClassVar[dict] = {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "minItems": 2,
        "maxItems": 2,
    }
    integer: ClassVar[bool] = True
    log: ClassVar[bool] = True

    def distribution(self):
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=True)


KINDS: dict[str, type[Kind]] = {
    kind.name: kind for kind in (Choice, Uniform, LogUniform, Int, LogInt)
}

# The JSON Schema of one entry (`dlcli schema`): one kind's key, and `step`.
ENTRY_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 2,
    "properties": {
        **{name: kind.schema for name, kind in KINDS.items()},
        "step": {"type": "number", "exclusiveMinimum": 0},
    },
    "additionalProperties": False,
}


def kind_of(entry) -> Kind:
    """One `sweep.space` entry as its kind; a ValueError saying what is wrong with it."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected one of {FORMS}, got {entry!r}")  # noqa: TRY004 - pydantic reports ValueError
    kinds = [k for k in entry if k in KINDS]
    unknown = [k for k in entry if k not in (*KINDS, "step")]
    if unknown:
        raise ValueError(
            f"unknown range kind '{unknown[0]}'{did_you_mean(str(unknown[0]), tuple(KINDS))}; "
            f"expected one of {FORMS}"
        )
    if len(kinds) != 1:
        raise ValueError(
            f"give exactly one of {', '.join(KINDS)}, got {', '.join(kinds) or 'none'}"
        )
    return KINDS[kinds[0]].from_entry(entry)


def distributions(space: dict) -> dict:
    """A whole `sweep.space` as Optuna distributions, by dotted key (imports Optuna)."""
    return {key: kind_of(entry).distribution() for key, entry in space.items()}


def grid(space: dict) -> tuple[dict, list[str]]:
    """The grid sampler's lists of values by key, and the keys that have no finite list."""
    lists, endless = {}, []
    for key, entry in space.items():
        values = kind_of(entry).grid_values()
        if values is None:
            endless.append(key)
        else:
            lists[key] = values
    return lists, endless


def grid_size(space: dict) -> int:
    """How many trials the grid holds: the product of its lists' lengths."""
    return math.prod(len(values) for values in grid(space)[0].values())
