"""A sweep's checks before any trial: its space against the schema and Keras, its target metric.

`check_space` tries each range's ends and every choice (`dlcli.config.space`'s candidates)
as a trial's `--set`s against the schema and Keras's names, refuses a grid over a range
with no finite list, and finds the `Target`: the history.csv column the trials are scored on
and which way is better (asked of `dlcli.runs.metrics`, from the Keras metric objects). Every
problem is placed at the line of its `sweep:` key, and all are reported at once.

This module runs no trial and opens no study; it imports Keras (inside `check_space`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from dlcli.config.load import load_config
from dlcli.config.schema import Config, SweepConfig
from dlcli.config.space import ENDLESS_GRID, grid, kind_of
from dlcli.errors import ConfigError, Problem, did_you_mean
from dlcli.runs.metrics import column_direction, logged_directions
from dlcli.runtime.devices import usable_cores
from dlcli.tuning.trials import override


@dataclass
class Target:
    """What the trials are scored on: a history.csv column and which way is better."""

    metric: str
    direction: str  # max | min


def check_space(
    config: Config, source: str | Path | dict, overrides=()
) -> tuple[list[Problem], Target | None]:
    """Every problem of `config.sweep` found before any trial: a key the config lacks, a
    value the schema or Keras refuses, a grid without finite lists, a metric training does
    not log. Each problem is placed at the line of its `sweep:` key. Imports Keras (names
    and arguments are checked against it)."""
    from dlcli.config.load import locator
    from dlcli.config.text import raw_config
    from dlcli.model import checks
    from dlcli.runtime import keras_names
    from dlcli.runtime.backend import auto_backend
    from dlcli.runtime.keras_import import import_keras

    sweep = config.sweep
    problems: list[Problem] = []
    if "keras" not in sys.modules:  # names and arguments are the same on every backend
        import_keras(auto_backend())
    for key, entry in sweep.space.items():
        at = ("sweep", "space", key)
        if key.split(".")[0] in ("name", "sweep"):
            problems.append(
                config.problem(
                    at,
                    f"'{key}' cannot be searched: it names the trials' folders or "
                    "the search itself; sweep keys of data, model, compile, training "
                    "or runtime",
                )
            )
            continue
        tried = kind_of(entry).candidates()
        found: dict[str, list] = {}
        for value in tried:
            trial_overrides = [*overrides, override(key, value)]
            messages = []
            try:
                raw, lines, shown, origins = raw_config(source, trial_overrides)
                messages += [
                    _said(p) for p in checks.name_problems(raw, locator(lines, shown, origins))
                ]
                messages += [
                    _said(p) for p in checks.config_problems(load_config(source, trial_overrides))
                ]
            except ConfigError as exc:
                messages += [_said(p) for p in exc.problems]
            for message in dict.fromkeys(messages):
                found.setdefault(message, []).append(value)
        for message, values in found.items():
            shown_values = "" if len(values) == len(tried) > 1 else f" (with {key} = {values[0]!r})"
            problems.append(config.problem(at, f"{message}{shown_values}"))
    if sweep.sampler == "grid":
        for key in grid(sweep.space)[1]:
            problems.append(config.problem(("sweep", "space", key), ENDLESS_GRID))
    target = None
    try:
        target = scoring_target(config, keras_names)
    except ConfigError as exc:
        problems += exc.problems
    return problems, target


def _said(problem: Problem) -> str:
    """A problem a trial's value causes, without its place (the sweep's key is the place)."""
    return f"{problem.path}: {problem.message}" if problem.path else problem.message


def scoring_target(config: Config, keras_names) -> Target:
    """The metric the trials are scored on, checked against what training will log, and its
    direction: `sweep.direction`, or (auto) the metric's own as Keras declares it."""
    from dlcli.runtime.keras_names import NameProblem

    sweep = config.sweep
    validation = config.data.validation_split > 0
    names, metrics = ["loss"], {}
    for spec in config.compile.metrics:
        try:
            metric = keras_names.make_metric(spec)
        except NameProblem:
            return Target(
                sweep.metric or "loss", "min"
            )  # the metric's own error is reported by training
        names.append(keras_names.logged_name(metric))
        metrics[names[-1]] = metric
    ways = logged_directions(metrics)
    logged = [*names, *([f"val_{n}" for n in names] if validation else [])]
    metric = sweep.metric or ("val_loss" if validation else "loss")
    if metric not in logged:
        hint = did_you_mean(metric, logged)
        why = (
            " (data.validation_split is 0: no val_ columns)"
            if metric.startswith("val_") and not validation
            else ""
        )
        raise ConfigError(
            config.problem(
                ("sweep", "metric"),
                (
                    f"'{metric}' is not a column of history.csv{why}{hint}; choose one of: {', '.join(logged)}"
                ),
            )
        )
    way = sweep.direction if sweep.direction != "auto" else column_direction(metric, ways)
    return Target(metric, way)


def sweep_settings(config: Config, trials: int | None, parallel: int | None) -> SweepConfig:
    """The config's sweep settings with `--trials` / `--parallel` applied."""
    settings = config.sweep.model_copy(deep=True)
    if trials is not None:
        settings.trials = trials
    if parallel is not None:
        settings.parallel = parallel
    return settings


def check_parallel(parallel: int, where: str, what: str = "trials") -> None:
    """A ConfigError when `parallel` trials (or folds) at once exceed the cores this process may use."""
    cores = len(usable_cores())
    if parallel > cores:
        more = ", or share a --storage between machines" if what == "trials" else ""
        raise ConfigError(
            Problem(
                f"{parallel} {what} at once is more than the {cores} cores this process may use (each "
                f"needs one of its own); give at most {cores}{more}",
                where=where,
            )
        )
