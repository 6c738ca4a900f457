"""A finished run's saved files read back, each checked: the run folder by name, its
labels (`labels.json`), a table's or text's preprocessing (`preprocessing.json`) and
whether its loss takes logits. Light on purpose: no Keras and no config schema, so a server
answering from the run's ONNX copy starts without them.
"""

from __future__ import annotations

from dlcli.config.sources import TABLE_SOURCES
from dlcli.config.text import raw_config
from dlcli.errors import ConfigError, Problem
from dlcli.runs.record import RunRecord
from dlcli.runs.runfolder import RunFolder


def open_run(run, runs_dir=None) -> RunFolder:
    """The run folder `run` names (an id, a path, `latest`), or `run` itself."""
    return run if isinstance(run, RunFolder) else RunFolder.find(run, runs_dir)


def run_labels(run: RunFolder, record: RunRecord, model) -> list | None:
    """labels.json (class index -> original label), checked: a list of labels for a
    classification run, None for regression; a ConfigError for a damaged file. `model` is
    anything with the model's `output_shape`."""
    labels = run.read_json("labels.json")
    if record.data.task == "regression" and labels is None:
        return None
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(v, (str, int, float, bool)) for v in labels)
    ):
        raise ConfigError(
            Problem(
                "labels.json is missing or is not a list of class labels; "
                "restore it or retrain the run",
                where=str(run.file("labels.json")),
            )
        )
    width = int(model.output_shape[-1])
    if width not in (1, len(labels)):
        raise ConfigError(
            Problem(
                f"labels.json names {len(labels)} classes but the model has {width} outputs; "
                "restore it or retrain the run",
                where=str(run.file("labels.json")),
            )
        )
    return labels


def run_preprocessing(run: RunFolder, record: RunRecord):
    """A table run's preprocessing.json (`TablePreprocessing`), a text run's vocabulary
    (`TextPreprocessing`), None for other sources; a ConfigError when the run lacks it or
    it is damaged."""
    if record.data.source not in (*TABLE_SOURCES, "text"):
        return None
    shown = str(run.file("preprocessing.json"))
    data = run.read_json("preprocessing.json")
    if not isinstance(data, dict):
        raise ConfigError(
            Problem(
                "the run has no readable preprocessing.json; restore it or retrain the run",
                where=shown,
            )
        )
    if record.data.source == "text":
        from dlcli.data.media.vocabulary import TextPreprocessing

        return TextPreprocessing.from_json(data, shown)
    from dlcli.data.tables.preprocessing import TablePreprocessing

    return TablePreprocessing.from_json(data, shown)


def loss_takes_logits(run: RunFolder) -> bool:
    """Whether the run's loss takes logits (`from_logits` in its saved config.yaml, which
    names the loss it trained with), read as YAML: the schema checked it when it ran."""
    data, _, shown, _ = raw_config(run.file("config.yaml"))
    compile_ = data.get("compile")
    loss = compile_.get("loss") if isinstance(compile_, dict) else None
    if loss is not None and not isinstance(loss, (str, dict)):
        raise ConfigError(
            Problem("compile.loss is neither a name nor a mapping; retrain the run", where=shown)
        )
    return bool(loss.get("from_logits")) if isinstance(loss, dict) else False


__all__ = ["loss_takes_logits", "open_run", "run_labels", "run_preprocessing"]
