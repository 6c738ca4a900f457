"""dlcli: train Keras models from YAML files and keep every run in a folder you can trust.

The same functions serve the `dlcli` command and Python users:

    import dlcli
    result = dlcli.train("configs/digits_mlp.yaml", overrides=["training.epochs=3"])
    dlcli.evaluate(result.run)

Importing dlcli imports neither TensorFlow nor Keras; the functions that need them do.
"""

import sys
import types

__version__ = "0.1.0"

from dlcli.errors import ConfigError, DlcliError, GateFailed, RunFailed


def __getattr__(name):
    # The config schema (pydantic) and RunFolder load on first use: `dlcli --help` stays quick.
    if name in ("Config", "load_config"):
        from dlcli import config

        return getattr(config, name)
    if name == "RunFolder":
        from dlcli.runfolder import RunFolder

        return RunFolder
    raise AttributeError(f"module 'dlcli' has no attribute {name!r}")


def train(config, overrides=(), runs_dir=None, **options):
    """Train a config (path, dict or Config); see `dlcli.training.train`."""
    from dlcli.training import train as _train

    return _train(config, overrides=overrides, runs_dir=runs_dir, **options)


def evaluate(run=None, split="test", data=None, runs_dir=None, backend=None):
    """Evaluate a run's saved model; see `dlcli.evaluation.evaluate`."""
    from dlcli.evaluation import evaluate as _evaluate

    return _evaluate(run, split=split, data=data, runs_dir=runs_dir, backend=backend)


def predict(run, input_path, proba=False, runs_dir=None, backend=None):
    """Prediction rows (dicts) for a CSV/NPZ of features; see `dlcli.evaluation.predict`."""
    from dlcli.evaluation import predict as _predict

    return _predict(run, input_path, proba=proba, runs_dir=runs_dir, backend=backend)


def export(run=None, formats=(), output=None, runs_dir=None):
    """Deployable copies of a run's model, each checked against it; see `dlcli.export.export_run`.
    Returns exports.json's content (`failed` names the copies that failed their check)."""
    from dlcli.export import export_run

    return export_run(run, formats=formats, output=output, runs_dir=runs_dir)


def sweep(config=None, overrides=(), runs_dir=None, **options):
    """Search a config's `sweep.space` (or carry on `resume=SWEEP`); see `dlcli.sweep.run_sweep`.
    Returns a `SweepResult` (`.folder`, `.best`, `.record`: sweep.json's content)."""
    from dlcli.sweep import run_sweep

    return run_sweep(config, overrides=overrides, runs_dir=runs_dir, **options)


def validate(config, overrides=()):
    """Check a config and build its model without training; see `dlcli.training.prepare`."""
    from dlcli.training import prepare

    return prepare(config, overrides)


class _Package(types.ModuleType):
    """`dlcli.export` and `dlcli.sweep` stay the functions above: Python binds a submodule
    over its package's attribute of the same name when it is first imported, which would
    turn `dlcli.export(...)` into "module is not callable" once anything imported
    `dlcli.export` (the module is still `sys.modules["dlcli.export"]`, and
    `from dlcli.export import export_run` works as ever)."""

    def __setattr__(self, name, value):
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


_FUNCTIONS = ("export", "sweep")
sys.modules[__name__].__class__ = _Package

__all__ = [
    "Config", "ConfigError", "DlcliError", "GateFailed", "RunFailed", "RunFolder",
    "evaluate", "export", "load_config", "predict", "sweep", "train", "validate",
]
