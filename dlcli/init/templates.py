"""Starter configs for `dlcli init`: the commented YAML files in `dlcli/init/configs/`, or
one fitted to a table file (`dlcli init --from-data FILE`).

A template's first comment line is its description (`dlcli init --list`). Writing one never
overwrites a file unless asked. Imports neither Keras nor the schema: `init` is instant.

`from_data` profiles a CSV or Parquet file with the same reader `train` uses
(`dlcli.init.profile`; the reader is imported only then, never Keras) and renders a config
for it (`dlcli.init.render`). It validates and trains as written.

Example:
    >>> write_template("experiments/", "csv")
    PosixPath('experiments/config.yaml')
    >>> write_from_data("census.csv", target="-1")[0]
    PosixPath('census.yaml')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.files import write_output


def _templates_dir():
    return resources.files("dlcli.init") / "configs"


def templates() -> dict[str, str]:
    """Template name -> its one-line description (the first comment line of the file)."""
    out = {}
    for entry in sorted(_templates_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            first = next(
                (line for line in entry.read_text(encoding="utf-8").splitlines() if line.strip()),
                "",
            )
            out[entry.name[: -len(".yaml")]] = first.lstrip("#").strip()
    return out


def template_text(name: str) -> str:
    """The commented YAML of a template; a ConfigError naming the templates if unknown."""
    names = templates()
    if name not in names:
        raise ConfigError(
            Problem(
                f"no template '{name}'{did_you_mean(name, names)}; choose one of: {', '.join(names)}",
                where="--template",
            )
        )
    return (_templates_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def write_template(
    path: str | os.PathLike = "config.yaml", name: str = "mlp", force: bool = False
) -> Path:
    """Write template `name` to `path` (a folder gets `config.yaml` inside); return the file.

    Refuses (ConfigError, exit 2) to overwrite an existing file unless `force`.
    """
    text = template_text(name)
    target = _destination(path, "config.yaml", force)
    _write(target, text)
    return target


def _destination(path: str | os.PathLike, default_name: str, force: bool) -> Path:
    """The file to write: `path`, or `default_name` inside it when it is a folder; a
    ConfigError when it exists and `force` is not given."""
    target = Path(path)
    if target.is_dir() or str(path).endswith(("/", os.sep)):
        target = target / default_name
    if target.exists() and not force:
        raise ConfigError(
            Problem(
                "already exists; pass --force to overwrite it, or choose another PATH",
                where=str(target),
            )
        )
    return target


def _write(target: Path, text: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            Problem(f"cannot write it: {exc.strerror or exc}", where=str(target))
        ) from None
    write_output(target, text)


# ---------------------------------------------------------------- a config fitted to a table file


@dataclass
class FittedConfig:
    """What `fitted_config` made of a table file: the YAML and the facts `init --json` reports."""

    text: str
    data: str  # the data file, as given
    target: str | int  # as written in the config: a name, or a position in a file without a header
    task: str  # classification | regression
    rows: int
    features: list[str]  # the feature columns written (active ones)
    classes: list[str] | None = None


def from_data(
    file: str | os.PathLike, target: str | int | None = None, config_dir: str | os.PathLike = "."
) -> str:
    """The commented YAML config for the table `file` (csv, or parquet by its .parquet/.pq suffix).

    Args:
        file: the CSV or Parquet file.
        target: the target column: a name, or a 0-based position (an int, or text such as
            '3' or '-1'); default the last column.
        config_dir: the folder the config will be written to; `data.path` is written
            relative to it.
    """
    return fitted_config(file, target, config_dir).text


def write_from_data(
    file: str | os.PathLike,
    path: str | os.PathLike | None = None,
    target: str | int | None = None,
    force: bool = False,
) -> tuple[Path, FittedConfig]:
    """Write the config `from_data` makes for `file` to `path`; return the file and the facts.

    `path` defaults to the data file's name with `.yaml` in the current folder; a folder gets
    that name inside. Refuses to overwrite an existing file unless `force`, and never
    overwrites the data file itself.
    """
    default_name = f"{Path(file).stem or Path(file).resolve().name or 'data'}.yaml"
    destination = _destination(path if path is not None else default_name, default_name, force)
    if os.path.exists(file) and os.path.exists(destination) and os.path.samefile(file, destination):
        raise ConfigError(
            Problem(
                "is the data file itself; choose another PATH for the config",
                where=str(destination),
            )
        )
    fitted = fitted_config(file, target, destination.parent, destination.name)
    _write(destination, fitted.text)
    return destination, fitted


def fitted_config(
    file: str | os.PathLike,
    target: str | int | None = None,
    config_dir: str | os.PathLike = ".",
    config_name: str = "config.yaml",
) -> FittedConfig:
    """`from_data`, with the facts about the file besides the text: the table profiled
    (`dlcli.init.profile`), then the config rendered for it (`dlcli.init.render`)."""
    from dlcli.init.images import profile_images, render_images
    from dlcli.init.media import media_kind, profile_media, render_media
    from dlcli.init.profile import profile_table
    from dlcli.init.render import render_config

    kind = media_kind(file)
    if kind in ("text", "audio"):
        media = profile_media(file, kind, target)
        classes = [label for label, _ in media.classes]
        return FittedConfig(
            render_media(media, config_dir, config_name),
            str(file),
            media.target or "",
            "classification",
            media.files,
            [kind],
            classes,
        )
    if kind == "images":
        images = profile_images(file, target)
        text = render_images(images, config_dir, config_name)
        classes = [label for label, _ in images.classes]
        return FittedConfig(
            text, str(file), images.target or "", "classification", images.files, ["image"], classes
        )
    profile = profile_table(file, target)
    text = render_config(profile, config_dir, config_name)
    goal = profile.target
    active = [c.name for c in profile.columns if c.left_out is None]
    classes = goal.labels if goal.task == "classification" else None
    return FittedConfig(text, str(file), goal.ref, goal.task, profile.rows, active, classes)


__all__ = [
    "FittedConfig",
    "fitted_config",
    "from_data",
    "template_text",
    "templates",
    "write_from_data",
    "write_template",
]
