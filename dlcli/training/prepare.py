"""`prepare`: a config validated, its data loaded, its model built and compiled, with the
runtime chosen for it; nothing written. It is all of `dlcli validate`, and the first step of
`dlcli train` (`dlcli.training.session`): every problem it finds is a ConfigError (exit 2)
raised before a run folder exists.

Example:
    >>> prepared = prepare("configs/digits_mlp.yaml", overrides=["training.epochs=3"])
    >>> prepared.choices.backend, prepared.model.count_params()
    ('jax', 10506)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from dlcli.config.load import load_config, locator
from dlcli.config.schema import Config
from dlcli.config.text import raw_config
from dlcli.data.dataset import Dataset, load_data
from dlcli.errors import ConfigError
from dlcli.model import checks
from dlcli.model.build import build_model, resolve
from dlcli.runtime.backend import auto_backend, choose_backend
from dlcli.runtime.choices import Choices, apply_runtime, choose_runtime
from dlcli.runtime.devices import enable_memory_growth, list_devices
from dlcli.runtime.keras_import import import_keras
from dlcli.tracking import tracker
from dlcli.tracking.where import masked
from dlcli.training import class_weight
from dlcli.training import distributed as processes
from dlcli.training.distributed import Group


@dataclass
class Prepared:
    """What `prepare` hands on: the resolved config, data, compiled model, runtime choices."""

    config: Config
    data: Dataset
    model: object
    choices: Choices
    keras: object
    timings: dict = field(default_factory=dict)
    group: Group = field(default_factory=Group)
    share: processes.Share | None = None  # this process's part of a multi-process run
    class_weight: np.ndarray | None = None  # each class's weight in the training loss


def as_config(config: Config | str | os.PathLike | dict, overrides=()) -> Config:
    if isinstance(config, Config):
        return load_config(config.to_dict(), overrides) if overrides else config
    return load_config(config, overrides)


def prepare(
    config: Config | str | dict, overrides=(), group: Group | None = None, tracks: bool = False
) -> Prepared:
    """Validate the config, load the data, build and compile the model; nothing is written.
    `group`: this process's place in a multi-process run (`dlcli.training.distributed`);
    `tracks`: a run that will be tracked in MLflow when the config says so (its worker is
    started early)."""
    group = group or Group()
    try:
        config = as_config(config, overrides)
    except ConfigError as exc:
        raise ConfigError(exc.problems + _name_problems(config, overrides)) from None
    requested = config.runtime.backend
    config, why = with_backend(config, group.count)
    if problems := checks.config_problems(config):
        raise ConfigError(problems)
    runtime = config.runtime
    check_processes(config, group)
    if tracks and config.output.mlflow is not False and group.leads:
        tracker.prestart()  # MLflow's import on another core, beside Keras's
    keras = import_keras(
        runtime.backend, config.where(("runtime", "backend")), runtime.deterministic
    )
    if problems := checks.callback_problems(config):
        raise ConfigError(problems)
    enable_memory_growth(runtime.backend)
    started = time.perf_counter()
    data = load_data(config)
    weights = class_weight.resolve(config, data)
    loaded = time.perf_counter()
    choices = choose_runtime(
        runtime,
        list_devices(runtime.backend),
        data.train.steps(config.training.batch_size),
        group.count,
        requested=requested,
        reason=why,
    )
    share = processes.share_of(config, group, choices, data) if group.several else None
    config = resolve(config, data)
    with apply_runtime(keras, choices, config.seed):
        model = build_model(config, data, keras, choices)
    choices = choices.compiled(model)
    timings = {
        "load_s": round(loaded - started, 3),
        "build_s": round(time.perf_counter() - loaded, 3),
    }
    return Prepared(config, data, model, choices, keras, timings, group, share, weights)


def with_backend(config: Config, processes: int = 1) -> tuple[Config, str]:
    """A copy of `config` on a concrete backend (`runtime.backend: auto` chosen by
    `dlcli.runtime.backend.choose_backend`), and why that one."""
    try:
        backend, why = choose_backend(
            config.runtime, [layer.type for layer in config.model.layers], processes
        )
    except ConfigError as exc:
        raise ConfigError(
            [
                config.problem(("runtime", "backend"), p.message)
                if p.where == "runtime.backend"
                else p
                for p in exc.problems
            ]
        ) from None
    if backend == config.runtime.backend:
        return config, why
    chosen = config.model_copy(deep=True)
    chosen.runtime.backend = backend
    return chosen, why


def written_config(prepared: Prepared) -> str:
    """config.yaml: the resolved config, with runtime.backend as the user gave it (`auto`
    stays `auto`, so the run folder moves to a machine with other backends; run.json says
    which one trained it). A password in `output.mlflow.tracking_uri` is masked: the
    credentials of a tracking server belong in MLFLOW_TRACKING_USERNAME/PASSWORD."""
    config = prepared.config
    requested = prepared.choices.backend_requested or config.runtime.backend
    uri = getattr(config.output.mlflow, "tracking_uri", None)
    if requested != config.runtime.backend or (uri and masked(uri) != uri):
        config = config.model_copy(deep=True)
        config.runtime.backend = requested
        if uri:
            config.output.mlflow.tracking_uri = masked(uri)
    return config.to_yaml()


def check_processes(config: Config, group: Group) -> None:
    """Several processes train on JAX only."""
    backend = config.runtime.backend
    if group.several and backend != "jax":
        raise ConfigError(
            config.problem(
                ("runtime", "backend"),
                (
                    f"{group.count} processes (--num-processes) train on runtime.backend: jax, got {backend} "
                    "(Keras 3's TensorFlow backend does not run MultiWorkerMirroredStrategy: keras-team/keras#20585)"
                ),
            )
        )


def _name_problems(source, overrides) -> list:
    """When the schema fails, still report unknown Keras names and arguments (best effort)."""
    if isinstance(source, Config):
        return []
    try:
        data, lines, shown, origins = raw_config(source, overrides)
        import_keras(auto_backend())
    except ConfigError:
        return []
    return checks.name_problems(data, locator(lines, shown, origins))


__all__ = ["Prepared", "as_config", "check_processes", "prepare", "with_backend", "written_config"]
