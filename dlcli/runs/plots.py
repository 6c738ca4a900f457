"""Figures: the curves of a run and a confusion matrix, as matplotlib `Figure`s.

matplotlib is imported here only, through its `Figure` class (no pyplot, no GUI backend),
so no display is needed and commands that draw nothing never pay for it. Where they are
saved is `dlcli.runs.reports`' business.
"""

from __future__ import annotations

from dlcli.runs.metrics import HISTORY_EXTRA


def curves_figure(rows: list[dict], best_epoch: int, title: str):
    """Loss and each metric per epoch (one panel each, loss first), train and validation,
    the best epoch marked."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    names = [k for k in rows[0] if k not in HISTORY_EXTRA and not k.startswith("val_")]
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(4.5 * len(names), 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, [r[name] for r in rows], marker="o", ms=3, label="train")
        if f"val_{name}" in rows[0]:
            ax.plot(epochs, [r[f"val_{name}"] for r in rows], marker="o", ms=3, label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    # Fixed margins: fig.tight_layout() would cost more than the drawing.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.15, top=0.82, wspace=0.25)
    return fig


def confusion_figure(matrix, labels: list, title: str):
    """Counts per (true, predicted) class, written in the cells for up to 30 classes."""
    from matplotlib.figure import Figure

    size = min(3 + 0.45 * len(labels), 14)
    fig = Figure(figsize=(size, size * 0.85))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(len(labels))
    ax.set_xticks(ticks, [str(label) for label in labels], rotation=45, ha="right")
    ax.set_yticks(ticks, [str(label) for label in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    if len(labels) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if count > threshold else "black",
                )
    # Margins from the longest label: fig.tight_layout() would cost more than the drawing.
    longest = max(len(str(label)) for label in labels)
    margin = min(0.08 + 0.011 * longest, 0.35)
    fig.subplots_adjust(left=margin, bottom=margin + 0.07, right=0.97, top=0.93)
    return fig


def sweep_figure(trials: list[dict], metric: str, way: str, title: str):
    """Each trial's value by trial number (completed as dots, pruned at their last epoch's
    value as crosses) and the best so far as a step line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    done = [t for t in trials if t["state"] == "completed" and t.get("value") is not None]
    pruned = [t for t in trials if t["state"] == "pruned" and t.get("last_value") is not None]
    ax.plot([t["number"] for t in done], [t["value"] for t in done], "o", ms=5, label="completed")
    if pruned:
        ax.plot(
            [t["number"] for t in pruned],
            [t["last_value"] for t in pruned],
            "x",
            ms=6,
            color="grey",
            label="pruned (last epoch)",
        )
    best, steps = None, []
    for t in sorted(done, key=lambda t: t["number"]):
        if best is None or (t["value"] > best if way == "max" else t["value"] < best):
            best = t["value"]
        steps.append((t["number"], best))
    if steps:
        ax.step(
            [n for n, _ in steps],
            [b for _, b in steps],
            where="post",
            color="tab:red",
            label="best so far",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.9)
    return fig


def importance_figure(importances: dict[str, float], metric: str):
    """How much each searched key mattered to `metric` (Optuna's importance), largest on top."""
    from matplotlib.figure import Figure

    names = list(importances)[::-1]
    fig = Figure(figsize=(6.5, 0.5 * len(names) + 1.3))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {metric}")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3, axis="x")
    fig.subplots_adjust(left=0.4, right=0.97, bottom=0.7 / (0.5 * len(names) + 1.3), top=0.95)
    return fig
