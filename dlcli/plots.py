"""Pictures of a run: `curves.png`, loss and each metric per epoch, train vs validation.

matplotlib is imported here only, through its `Figure` class (no pyplot, no GUI backend),
so no display is needed and commands that draw nothing never pay for it.
"""

from __future__ import annotations

from pathlib import Path


def plot_curves(path: Path, rows: list[dict], best_epoch: int, title: str) -> None:
    """One panel per metric (loss first), train and validation, the best epoch marked."""
    if not rows:
        return
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    names = [k for k in rows[0] if k not in ("epoch", "lr", "epoch_time_s") and not k.startswith("val_")]
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
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)
