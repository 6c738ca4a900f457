"""dlcli: train Keras models from YAML files and keep every run in a folder you can trust.

The same functions serve the `dlcli` command and Python users:

    import dlcli
    result = dlcli.train("configs/digits_mlp.yaml", overrides=["training.epochs=3"])
    dlcli.evaluate(result.run)

Importing dlcli imports neither TensorFlow nor Keras; the functions that need them do.
"""

__version__ = "0.1.0"

from dlcli.errors import ConfigError, DlcliError, GateFailed, RunFailed


def __getattr__(name):
    # The config schema (pydantic) and RunFolder load on first use: `dlcli --help` stays quick.
    if name == "Config":
        from dlcli.config.schema import Config

        return Config
    if name == "load_config":
        from dlcli.config.load import load_config

        return load_config
    if name == "RunFolder":
        from dlcli.runs.runfolder import RunFolder

        return RunFolder
    raise AttributeError(f"module 'dlcli' has no attribute {name!r}")


def train(config, overrides=(), runs_dir=None, **options):
    """Train a config (path, dict or Config); see `dlcli.training.session.train`."""
    from dlcli.training.session import train as _train

    return _train(config, overrides=overrides, runs_dir=runs_dir, **options)


def evaluate(run=None, split="test", data=None, runs_dir=None, backend=None):
    """Evaluate a run's saved model; see `dlcli.use.evaluate.evaluate`."""
    from dlcli.use.evaluate import evaluate as _evaluate

    return _evaluate(run, split=split, data=data, runs_dir=runs_dir, backend=backend)


def predict(run, input_path, proba=False, runs_dir=None, backend=None):
    """Prediction rows (dicts) for a CSV/NPZ of features; see `dlcli.use.evaluate.predict`."""
    from dlcli.use.evaluate import predict as _predict

    return _predict(run, input_path, proba=proba, runs_dir=runs_dir, backend=backend)


def export(run=None, formats=(), output=None, runs_dir=None):
    """Deployable copies of a run's model, each checked against it; see `dlcli.use.export.export_run`.
    Returns exports.json's content (`failed` names the copies that failed their check)."""
    from dlcli.use.export import export_run

    return export_run(run, formats=formats, output=output, runs_dir=runs_dir)


def sweep(config=None, overrides=(), runs_dir=None, **options):
    """Search a config's `sweep.space` (or carry on `resume=SWEEP`); see `dlcli.tuning.sweep.run_sweep`.
    Returns a `SweepResult` (`.folder`, `.best`, `.record`: sweep.json's content)."""
    from dlcli.tuning.sweep import run_sweep

    return run_sweep(config, overrides=overrides, runs_dir=runs_dir, **options)


def cv(config=None, overrides=(), runs_dir=None, **options):
    """K-fold cross-validation of a config (or carry on `resume=CV`); see `dlcli.tuning.cv.run_cv`.
    Returns a `CvResult` (`.folder`, `.record`: cv.json as a `CvRecord`, `.summary()`)."""
    from dlcli.tuning.cv import run_cv

    return run_cv(config, overrides=overrides, runs_dir=runs_dir, **options)


def validate(config, overrides=()):
    """Check a config and build its model without training; see `dlcli.training.prepare.prepare`."""
    from dlcli.training.prepare import prepare

    return prepare(config, overrides)


__all__ = [
    "Config",
    "ConfigError",
    "DlcliError",
    "GateFailed",
    "RunFailed",
    "RunFolder",
    "cv",
    "evaluate",
    "export",
    "load_config",
    "predict",
    "sweep",
    "train",
    "validate",
]
