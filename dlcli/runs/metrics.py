"""Metrics: which way is better, which epoch was best, what metrics.json holds.

Direction comes from Keras itself: each `keras.metrics.Metric` knows whether it goes up
or down (`_direction`, what `EarlyStopping(mode='auto')` asks), and a loss always goes
down. `directions(model)` reads it once, at training time, and run.json keeps it
(`metric_directions`), so readers of a run folder (`dlcli runs --sort`, `compare`, later
sweeps) never guess from a name. Only a run that recorded nothing (written before
dlcli 0.1 kept directions) falls back to `GUESS_HIGHER`. Nothing here imports Keras.

Example:
    >>> direction("val_accuracy", {"accuracy": "max", "loss": "min"})
    'max'
    >>> best_epoch([{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}], "val_loss", "min")
    2
"""

from __future__ import annotations

import math

# Only for runs whose run.json recorded no directions: name fragments of metrics that grow.
GUESS_HIGHER = ("acc", "auc", "precision", "recall", "f1", "r2", "iou", "cosine_similarity")
HISTORY_EXTRA = ("epoch", "lr", "epoch_time_s")


def base_name(metric: str) -> str:
    """'val_accuracy' -> 'accuracy'; 'test.loss' -> 'loss'."""
    name = metric.split(".", 1)[-1]
    return name.removeprefix("val_")


def direction(metric: str, known: dict[str, str] | None = None) -> str:
    """'max' when higher is better, else 'min': as recorded for the run, else guessed.

    Args:
        metric: a metric name as Keras logs it (`accuracy`, `val_loss`, `test.auc`).
        known: the run's recorded directions (run.json's `metric_directions`).
    """
    name = base_name(metric)
    if known and name in known:
        return known[name]
    if name == "loss" or name.endswith("_loss"):
        return "min"
    lowered = name.lower()
    return "max" if any(word in lowered for word in GUESS_HIGHER) else "min"


def directions(model) -> dict[str, str]:
    """Every metric the compiled Keras `model` logs, with Keras's own direction."""
    found = {"loss": "min"}
    pending = list(getattr(model, "metrics", []))
    while pending:
        metric = pending.pop(0)
        inner = getattr(metric, "metrics", None)
        if (
            isinstance(inner, (list, tuple))
            and inner
            and metric.name in ("compile_metrics", "loss")
        ):
            pending.extend(inner)  # Keras's containers of the compiled metrics
            continue
        way = declared_direction(metric)
        if way is not None:
            found[metric.name] = way
    return found


def declared_direction(metric) -> str | None:
    """'max' or 'min' as a Keras metric object declares it (`_direction`: 'up' or 'down'),
    None when it declares neither."""
    return {"up": "max", "down": "min"}.get(getattr(metric, "_direction", None))


def logged_directions(metrics: dict[str, object]) -> dict[str, str]:
    """The direction of `loss` and of each metric training will log, by its logged name, from
    the Keras metric objects before any model is compiled (`dlcli sweep` checks its target
    then): as each declares it, else guessed from its name (`direction`).

    Example:
        >>> logged_directions({"accuracy": keras.metrics.Accuracy()})
        {'loss': 'min', 'accuracy': 'max'}
    """
    found = {"loss": "min"}
    for name, metric in metrics.items():
        found[name] = declared_direction(metric) or direction(name)
    return found


def column_direction(column: str, logged: dict[str, str]) -> str:
    """The direction of a history.csv column (`val_accuracy`): its metric's in `logged`
    (`logged_directions`); a column of no logged metric is guessed from its name."""
    return logged.get(column.removeprefix("val_")) or direction(column)


def best_epoch(rows: list[dict], monitor: str, way: str) -> int:
    """The epoch whose `monitor` is best (the last epoch when rows lack it; 0 when empty).

    NaN and inf count as the worst value."""
    if not rows:
        return 0
    if monitor not in rows[0]:
        return rows[-1]["epoch"]
    worst = -math.inf if way == "max" else math.inf
    pick = max if way == "max" else min
    return pick(rows, key=lambda r: r[monitor] if math.isfinite(r[monitor]) else worst)["epoch"]


def final_metrics(
    rows: list[dict],
    test: dict,
    samples_per_s: float,
    best: int,
    kept_epoch: int,
    baselines: dict | None = None,
) -> dict:
    """metrics.json: train and val metrics at the kept epoch (the best one when early
    stopping restored its weights, else the last), the test metrics, and the counts; then
    `baselines` when there are any (`dlcli.training.baselines`: each one's test metrics)."""
    kept = next((r for r in rows if r["epoch"] == kept_epoch), {})
    train = {k: v for k, v in kept.items() if k not in HISTORY_EXTRA and not k.startswith("val_")}
    val = {k[4:]: v for k, v in kept.items() if k.startswith("val_")}
    return {
        "train": train,
        "val": val,
        "test": test,
        "best_epoch": best,
        "epochs_run": len(rows),
        "samples_per_s": round(samples_per_s, 1),
        **({"baselines": baselines} if baselines else {}),
    }


def baselines_of(metrics: dict) -> dict:
    """metrics.json's `baselines` (per baseline its test metrics and `fit_s`; `error` for
    one that could not be fitted), {} when it has none."""
    found = metrics.get("baselines")
    found = found if isinstance(found, dict) else {}
    return {str(name): values for name, values in found.items() if isinstance(values, dict)}


def baseline_values(rows: list[dict]) -> list[dict]:
    """Each baseline's test metrics across runs (`rows` with their `baselines`):
    [{"baseline", "metric", "values"}], a value None where a run lacks it."""
    scores: dict[str, list[dict]] = {}
    for row in rows:
        for name in row["baselines"]:
            scores[name] = [other["baselines"].get(name, {}) for other in rows]
    return [
        {"baseline": name, "metric": metric, "values": [_finite(s.get(metric)) for s in each]}
        for name, each in scores.items()
        for metric in dict.fromkeys(m for s in each for m in s if m not in ("fit_s", "error"))
    ]


def _finite(value) -> float | None:
    """A finite number as a float; anything else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
