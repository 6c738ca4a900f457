"""A config as text and plain data, before the schema: YAML read safely with the line of
every key, `--set KEY=VALUE` overrides applied, and the keys two configs differ in.

It knows YAML and nothing of the schema (`dlcli.config.schema`) or Keras, and imports only PyYAML
(and `dlcli.files`, which is stdlib), so the commands that read run folders (`runs`, `show`,
`compare`) stay instant. A config is small, and reading one is bounded: a regular file of at
most `MAX_BYTES`, nested at most `MAX_DEPTH` deep, at most `MAX_VALUES` values once its
aliases are expanded (a "billion laughs" is refused in milliseconds), and no key twice in
one mapping.

Example:
    >>> data, lines, shown, origins = raw_config("configs/digits_mlp.yaml", ["training.epochs=3"])
    >>> lines[("training", "epochs")], data["training"]["epochs"]
    (26, 3)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from dlcli.errors import ConfigError, Problem, first_line
from dlcli.files import regular_file

# Keys a resumed run may change; everything else must match the run's config.
RESUMABLE_KEYS = ("training.epochs", "runtime")
# Bounds of a config: its bytes, how deep it nests, how many values it expands to.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 20_000  # PyYAML composes ~30,000 values a second: refused within one
SMALL = "a config is small: data goes in a data file (data.path)"
TOO_MANY = (
    f"the config holds over {MAX_VALUES:,} values (counting what anchors and aliases "
    f"repeat); {SMALL}"
)
MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *defaults`, which may repeat keys on purpose


def format_path(path) -> str:
    """('model', 'layers', 1, 'units') -> 'model.layers[1].units'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node, loader) -> tuple[dict, list[tuple]]:
    """Map each path in a composed YAML node tree to the 1-based line it starts on, and
    find keys given twice in one mapping: (lines, [(path, key, first line, line)]).

    A node reached again through an alias is not walked again (its paths fall back to the
    line of the alias), so the walk is linear in the text, whatever the aliases expand to.
    """
    lines: dict = {}
    duplicates: list[tuple] = []
    seen: set[int] = set()

    def walk(node, path):
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    walk(value_node, (*path, key_node.value))
                    continue
                key = _key_of(key_node, loader)
                line = key_node.start_mark.line + 1
                if key is not None and key in first:
                    duplicates.append((path, key_node.value, first[key], line))
                elif key is not None:
                    first[key] = line
                child = (*path, key_node.value)
                lines.setdefault(child, line)
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                lines[child] = item.start_mark.line + 1
                walk(item, child)

    walk(node, ())
    return lines, duplicates


def _key_of(key_node, loader):
    """A mapping key as the dict will hold it (`1` and `1.0` are one key), or None when it
    is not a hashable scalar (the constructor then reports it)."""
    if not isinstance(key_node, yaml.ScalarNode):
        return None
    if key_node.tag == "tag:yaml.org,2002:str":
        return key_node.value
    try:
        key = loader.construct_object(key_node)
        hash(key)
    except (yaml.YAMLError, TypeError, ValueError):
        return None
    return key


def expanded_size(node, limit: int = MAX_VALUES) -> int:
    """How many values (scalars, lists, mappings, keys) the node tree holds once every
    alias is expanded; counted once per node, so a billion laughs costs microseconds.

    Example:
        >>> expanded_size(yaml.compose("a: &x [1, 2]\\nb: [*x, *x]"))
        13
    """
    sizes: dict[int, int] = {}

    def size(node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        sizes[id(node)] = total = min(total, limit + 1)  # no need to count a bomb in full
        return total

    return size(node)


class TooComplex(yaml.YAMLError):
    """YAML that parses but is no config: nested too deeply, or expanding too far."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message, self.line = message, line


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` as a float the way YAML 1.2 (and users) do, and
    refusing to nest deeper than `MAX_DEPTH` (before Python's recursion limit would) or to
    compose more than `MAX_VALUES` values (before the time and memory that takes)."""

    def compose_node(self, parent, index):
        depth, self._nodes = getattr(self, "_depth", 0), getattr(self, "_nodes", 0) + 1
        if depth >= MAX_DEPTH:
            raise TooComplex(
                f"nested too deeply (over {MAX_DEPTH} levels of lists and mappings); "
                "flatten it: a config nests a few levels",
                self._line(),
            )
        if self._nodes > MAX_VALUES:
            raise TooComplex(TOO_MANY, self._line())
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth

    def _line(self) -> int:
        """The 1-based line of the next event."""
        return self.peek_event().start_mark.line + 1


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def load_text(text: str) -> tuple[Any, dict, list[tuple]]:
    """(data, line of every path, keys given twice) of YAML text; TooComplex when it nests
    too deeply or its aliases expand past `MAX_VALUES` values (counted on the composed
    node tree, before anything is built)."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        if expanded_size(node) > MAX_VALUES:
            raise TooComplex(TOO_MANY, node.start_mark.line + 1)
        lines, duplicates = _line_map(node, loader)  # before construction flattens merge keys
        return loader.construct_document(node), lines, duplicates
    finally:
        loader.dispose()


def safe_load(text: str):
    """YAML text -> plain data, with the bounds of `load_text` (a key given twice: last wins)."""
    return load_text(text)[0]


def _read_text(path: str | Path, shown: str) -> str:
    """A config file's text: a regular file (never a FIFO or a device, which would block or
    never end) of at most MAX_BYTES, read with a bound whatever its size says."""
    path = regular_file(path, "file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot read it: {exc.strerror or exc}", where=shown)) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            Problem(
                f"the config is over dlcli's limit of {MAX_BYTES:,} bytes; {SMALL}",
                where=shown,
            )
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            Problem(f"cannot read it: {exc}; save the config as UTF-8 text", where=shown)
        ) from None


def read_yaml(path: str | Path) -> tuple[Any, dict]:
    """Read a YAML file safely; return its data and the line of every path in it."""
    shown = str(path)
    text = _read_text(path, shown)
    try:
        # The safe constructor never builds Python objects from tags: a `!!python/...`
        # tag is a constructor error here, reported like any other YAML mistake.
        data, lines, duplicates = load_text(text)
    except TooComplex as exc:
        raise ConfigError(
            Problem(exc.message, where=f"{shown}:{exc.line}" if exc.line else shown)
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark else shown
        reason = getattr(exc, "problem", None) or first_line(exc)
        context = getattr(exc, "context", None)
        message = f"invalid YAML: {reason}" + (f" ({context})" if context else "")
        raise ConfigError(Problem(message + "; fix the syntax on that line", where=where)) from None
    if duplicates:
        raise ConfigError(
            [
                Problem(
                    f"key '{key}' appears twice (lines {first} and {line}); keep one",
                    where=f"{shown}:{line}",
                    path=format_path(path),
                )
                for path, key, first, line in duplicates
            ]
        )
    return data, lines


def parse_override(text: str) -> tuple[tuple, Any]:
    """'model.layers.0.units=256' -> (('model', 'layers', 0, 'units'), 256)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            Problem("expected KEY=VALUE, such as training.epochs=3", where=f"--set {text}")
        )
    path = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
    try:
        value = safe_load(raw) if raw.strip() else raw
    except TooComplex as exc:
        raise ConfigError(Problem(exc.message, where=f"--set {text}")) from None
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
        raise ConfigError(
            Problem(
                f"index {part} is out of range (the list has {len(node)} items)",
                where=f"--set {text}",
            )
        )
    raise ConfigError(
        Problem(f"'{format_path(parent)}' holds no keys to set", where=f"--set {text}")
    )


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
        raise ConfigError(
            Problem(
                f"the config must be a mapping of keys (data:, model:, ...), not a {type(data).__name__}",
                where=shown,
            )
        )
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
