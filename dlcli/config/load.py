"""`load_config`: a YAML file (or a dict) with `--set` overrides, read (`dlcli.config.text`),
validated against the schema (`dlcli.config.schema`), and every schema error placed at its
`file:line` with its dotted path and, where it helps, a did-you-mean.

Example:
    >>> cfg = load_config("configs/digits_mlp.yaml", overrides=["training.epochs=3"])
    >>> cfg.training.epochs
    3
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ValidationError

from dlcli.config.schema import MAX_NAME, Config
from dlcli.config.text import format_path, raw_config
from dlcli.errors import ConfigError, Problem, did_you_mean

# What the type errors of these fields say is expected, and a fix for what was given.
EXPECTED = {
    "int_type": "an integer such as 10",
    "float_type": "a number such as 0.5",
    "bool_type": "true or false",
    "finite_number": "a finite number",
}


def _model_for(path: tuple):
    """The pydantic model class that owns `path` (for did-you-mean on unknown keys)."""
    model = Config
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            for c in candidates:  # list[Model]
                nested += [
                    a
                    for a in getattr(c, "__args__", ())
                    if isinstance(a, type) and issubclass(a, BaseModel)
                ]
        if not nested:
            return None
        model = nested[0]
    return model


def _probe(lines: dict, source: str, origins: dict) -> Config:
    """An empty Config that knows where each path of the file is, to place problems."""
    probe = Config.model_construct()
    probe._lines, probe._source, probe._overridden = lines, source, origins
    return probe


def locator(lines: dict, source: str, origins: dict):
    """problem(path, message) -> Problem, for raw config data before it validates."""
    return _probe(lines, source, origins).problem


def _problems_from(
    error: ValidationError, lines: dict, source: str, origins: dict
) -> list[Problem]:
    probe = _probe(lines, source, origins)
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            parent, key = loc[:-1], loc[-1]
            owner = _model_for(parent)
            hint = did_you_mean(key, owner.model_fields) if owner else ""
            if not hint and owner:
                hint = " (expected one of: " + ", ".join(owner.model_fields) + ")"
            problems.append(
                Problem(
                    f"unknown key '{key}'{hint}", where=probe.where(loc), path=format_path(parent)
                )
            )
            continue
        if kind == "missing":
            problems.append(
                Problem(
                    f"missing required key '{loc[-1]}'",
                    where=probe.where(loc[:-1]),
                    path=format_path(loc[:-1]),
                )
            )
            continue
        got = item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        if kind in EXPECTED:
            message = f"expected {EXPECTED[kind]}, got {got!r}{_type_fix(kind, got)}"
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            choices = re.findall(r"'([^']*)'", expected)
            message = (
                f"expected one of {', '.join(choices)}; got {got!r}{did_you_mean(got, choices)}"
            )
        elif kind not in ("value_error", "assertion_error") and not isinstance(got, (dict, list)):
            message = f"{message}, got {got!r}"
        problems.append(Problem(message, where=probe.where(loc), path=format_path(loc)))
    return problems


def _type_fix(kind: str, got) -> str:
    """How to write a value the schema refused for its type: `"10"` -> without quotes."""
    if isinstance(got, bool) and kind != "bool_type":
        return "; true/false is not a number"
    if isinstance(got, str) and kind != "bool_type":
        return "; write the number without quotes" if _number_text(got) else ""
    if isinstance(got, str):
        return "; write true or false without quotes" if got.lower() in ("true", "false") else ""
    if isinstance(got, float) and kind == "int_type" and got.is_integer():
        return f"; write {int(got)}"
    return ""


def _number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config(source: str | Path | dict, overrides=()) -> Config:
    """Read, override and validate a config; raise `ConfigError` with every problem.

    Args:
        source: a YAML file's path, or the config as a dict.
        overrides: `KEY=VALUE` strings, as `--set` takes them.

    Example:
        >>> load_config({"data": {"source": "iris"}, "model": {"layers": [{"type": "Dense"}]}})
    """
    data, lines, shown, origins = raw_config(source, overrides)
    if isinstance(source, dict):
        base, stem = Path.cwd(), "run"
    else:
        base, stem = Path(source).resolve().parent, Path(source).stem
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, lines, shown, origins)) from None
    config._source, config._lines, config._overridden = (
        shown,
        lines,
        origins,
    )  # where() for later checks
    if problems := config.monitor_problems() + config.streaming_problems():
        raise ConfigError(problems)
    if config.name is None:
        config.name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)[:MAX_NAME].strip("-.") or "run"
    for key in ("path", "test_path"):
        value = getattr(config.data, key)
        if value:
            setattr(config.data, key, str((base / Path(value).expanduser()).resolve()))
    return config


__all__ = ["load_config", "locator"]
