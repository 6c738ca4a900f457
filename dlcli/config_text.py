"""A config as text and plain data, before the schema: YAML read safely with the line of
every key, `--set KEY=VALUE` overrides applied, and the keys two configs differ in.

It knows YAML and nothing of the schema (`dlcli.config`) or Keras, and imports only PyYAML,
so the commands that read run folders (`runs`, `show`, `compare`) stay instant.

Example:
    >>> data, lines, shown, origins = raw_config("configs/digits_mlp.yaml", ["training.epochs=3"])
    >>> lines[("training", "epochs")], data["training"]["epochs"]
    (22, 3)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from dlcli.errors import ConfigError, Problem, first_line

# Keys a resumed run may change; everything else must match the run's config.
RESUMABLE_KEYS = ("training.epochs", "runtime")


def format_path(path) -> str:
    """('model', 'layers', 1, 'units') -> 'model.layers[1].units'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node, path=(), lines=None) -> dict:
    """Map each path in a composed YAML node tree to the 1-based line it starts on."""
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            lines[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _line_map(item, child, lines)
    return lines


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` as a float the way YAML 1.2 (and users) do."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)


def safe_load(text: str):
    return yaml.load(text, Loader=Loader)


def read_yaml(path: str | Path) -> tuple[Any, dict]:
    """Read a YAML file safely; return its data and the line of every path in it."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(Problem("no such file; check the path", where=shown)) from None
    except IsADirectoryError:
        raise ConfigError(Problem("is a folder, not a YAML file", where=shown)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(f"cannot read it: {exc}", where=shown)) from None
    try:
        # safe_load's constructor never builds Python objects from tags: a `!!python/...`
        # tag is a constructor error here, reported like any other YAML mistake.
        data = safe_load(text)
        node = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark else shown
        reason = getattr(exc, "problem", None) or first_line(exc)
        context = getattr(exc, "context", None)
        message = f"invalid YAML: {reason}" + (f" ({context})" if context else "")
        raise ConfigError(Problem(message + "; fix the syntax on that line", where=where)) from None
    return data, _line_map(node)


def parse_override(text: str) -> tuple[tuple, Any]:
    """'model.layers.0.units=256' -> (('model', 'layers', 0, 'units'), 256)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(Problem("expected KEY=VALUE, such as training.epochs=3", where=f"--set {text}"))
    path = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
    try:
        value = safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict, overrides) -> tuple[dict, dict]:
    """Apply `--set` overrides to raw config data; return it and where each came from."""
    data = copy.deepcopy(data)
    origins = {}
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for depth, part in enumerate(path):
            _check_settable(node, part, path[:depth], text)
            if depth == len(path) - 1:
                node[part] = value
                break
            step = node[part] if _has(node, part) else {}
            if isinstance(step, str) and isinstance(path[depth + 1], str):
                step = {"type": step}  # `optimizer: adam` then `--set compile.optimizer.lr=..`
            node[part] = step
            node = step
        origins[path] = text
    return data, origins


def _check_settable(node, part, parent: tuple, text: str) -> None:
    """`node[part] = ...` is possible: a mapping, or a list with that index."""
    if isinstance(node, dict):
        return
    if isinstance(node, list) and isinstance(part, int):
        if part < len(node):
            return
        raise ConfigError(Problem(
            f"index {part} is out of range (the list has {len(node)} items)", where=f"--set {text}"
        ))
    raise ConfigError(Problem(f"'{format_path(parent)}' holds no keys to set", where=f"--set {text}"))


def _has(node, part) -> bool:
    if isinstance(node, dict):
        return part in node
    if isinstance(node, list):
        return isinstance(part, int) and part < len(node)
    return False


def raw_config(source: str | Path | dict, overrides=()) -> tuple[dict, dict, str, dict]:
    """(data with overrides applied, line map, shown name, override origins) of a config."""
    if isinstance(source, dict):
        data, lines, shown = copy.deepcopy(source), {}, "<config>"
    else:
        data, lines = read_yaml(source)
        shown = str(source)
    if data is None:
        raise ConfigError(Problem("the config is empty; start from `dlcli init`", where=shown))
    if not isinstance(data, dict):
        raise ConfigError(Problem(
            f"the config must be a mapping of keys (data:, model:, ...), not a {type(data).__name__}",
            where=shown,
        ))
    data, origins = apply_overrides(data, overrides)
    return data, lines, shown, origins


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two resolved configs."""
    keys = sorted(set(old) | set(new)) if isinstance(old, dict) and isinstance(new, dict) else None
    if keys is None:
        if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            out = []
            for i, (a, b) in enumerate(zip(old, new)):
                out += config_differences(a, b, f"{prefix}.{i}")
            return out
        return [prefix] if old != new else []
    out = []
    for key in keys:
        path = f"{prefix}.{key}" if prefix else str(key)
        out += config_differences(old.get(key), new.get(key), path)
    return out


def resumable(key: str) -> bool:
    """Whether `--resume` may change a dotted key (`training.epochs`, `runtime.*`)."""
    return any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_KEYS)
