"""Starter configs for `dlcli init`: the commented YAML files in `dlcli/templates/`.

A template's first comment line is its description (`dlcli init --list`). Writing one never
overwrites a file unless asked. Imports neither Keras nor the schema: `init` is instant.

Example:
    >>> write_template("experiments/", "csv")
    PosixPath('experiments/config.yaml')
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.files import write_output


def _templates_dir():
    return resources.files("dlcli") / "templates"


def templates() -> dict[str, str]:
    """Template name -> its one-line description (the first comment line of the file)."""
    out = {}
    for entry in sorted(_templates_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            first = next((line for line in entry.read_text(encoding="utf-8").splitlines() if line.strip()), "")
            out[entry.name[: -len(".yaml")]] = first.lstrip("#").strip()
    return out


def template_text(name: str) -> str:
    """The commented YAML of a template; a ConfigError naming the templates if unknown."""
    names = templates()
    if name not in names:
        raise ConfigError(Problem(
            f"no template '{name}'{did_you_mean(name, names)}; choose one of: {', '.join(names)}",
            where="--template",
        ))
    return (_templates_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def write_template(path: str | os.PathLike = "config.yaml", name: str = "mlp", force: bool = False) -> Path:
    """Write template `name` to `path` (a folder gets `config.yaml` inside); return the file.

    Refuses (ConfigError, exit 2) to overwrite an existing file unless `force`.
    """
    text = template_text(name)
    target = Path(path)
    if target.is_dir() or str(path).endswith(("/", os.sep)):
        target = target / "config.yaml"
    if target.exists() and not force:
        raise ConfigError(Problem("already exists; pass --force to overwrite it, or choose another PATH", where=str(target)))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot write it: {exc.strerror or exc}", where=str(target))) from None
    write_output(target, text)
    return target
