"""What a sweep folder shows besides sweep.json: best.yaml, history.png and importance.png.

- `best.yaml`: the best trial's resolved config under the sweep's name, so that
  `dlcli train best.yaml` trains it again; rewritten as each trial ends.
- `history.png` (each trial's value, the best so far) and `importance.png` (how much each
  searched key mattered): drawn at the end, or when the sweep is stopped; a figure that
  cannot be drawn is never the sweep's failure.

The drawing itself is `dlcli.runs.plots`'s; this module picks what to draw and where.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from dlcli.config.load import load_config
from dlcli.runs.runfolder import RunFolder
from dlcli.tuning.preflight import Target
from dlcli.tuning.record import Best, TrialRow
from dlcli.tuning.trials import CONFIG_FILE, override

BEST_FILE = "best.yaml"


def write_best(folder: RunFolder, best: Best, name: str, metric: str) -> None:
    """best.yaml for the sweep named `name`, whose trials are scored on `metric`."""
    folder.write_text(BEST_FILE, best_yaml(folder, best, name, metric))


def best_yaml(folder: RunFolder, best: Best, name: str, metric: str) -> str:
    """The best trial's resolved config (its run's config.yaml), named as the sweep's config."""
    text = None
    if best.run:
        path = Path(best.run) if os.path.isabs(best.run) else folder.path / best.run
        text = RunFolder(path).read_text("config.yaml")
    data = yaml.safe_load(text) if text else None
    if not isinstance(data, dict):  # the best trial ran elsewhere: its values on this config
        overrides = [override(k, v) for k, v in best.params.items()]
        data = load_config(folder.path / CONFIG_FILE, overrides).to_dict()
    data["name"] = name
    head = (
        f"# The best trial of sweep {folder.id}: trial {best.trial}, "
        f"{metric} = {best.value:.6g}\n# Reproduce it with: dlcli train best.yaml\n"
    )
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def draw_history(folder: RunFolder, trials: list[TrialRow], target: Target) -> None:
    """history.png: each trial's value by its number, and the best so far."""
    from dlcli.runs.plots import sweep_figure

    figure = sweep_figure(
        [row.to_json() for row in trials], target.metric, target.direction, folder.id
    )
    folder.save("history.png", lambda tmp: figure.savefig(tmp, dpi=80))


def draw_importance(folder: RunFolder, importances: dict[str, float], target: Target) -> None:
    """importance.png: how much each searched key mattered to the target (Optuna's fANOVA)."""
    from dlcli.runs.plots import importance_figure

    figure = importance_figure(importances, target.metric)
    folder.save("importance.png", lambda tmp: figure.savefig(tmp, dpi=80))
