"""Reports on a model's predictions: the confusion matrix of a split, as CSV and PNG.

`confusion_matrix.csv` has one row per true class and one column per predicted class,
named by the original labels; the PNG shows the same counts. scikit-learn computes it.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from dlcli.runfolder import RunFolder


def write_confusion(run: RunFolder, stem: str, y_true: np.ndarray, y_pred: np.ndarray, labels: list,
                    plot: bool = True, title: str = "") -> str:
    """Write `<stem>.csv` (and `<stem>.png`) into the run folder; return the CSV's name."""
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true)
    if y_true.ndim == 2:  # one-hot
        y_true = y_true.argmax(axis=-1)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *labels])
    for label, row in zip(labels, matrix):
        writer.writerow([label, *row.tolist()])
    run.write_text(f"{stem}.csv", buffer.getvalue())
    if plot:
        _plot(run.file(f"{stem}.png"), matrix, labels, title)
    return f"{stem}.csv"


def _plot(path, matrix: np.ndarray, labels: list, title: str) -> None:
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
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if count > threshold else "black")
    # Margins from the longest label: fig.tight_layout() would cost more than the drawing.
    longest = max(len(str(label)) for label in labels)
    margin = min(0.08 + 0.011 * longest, 0.35)
    fig.subplots_adjust(left=margin, bottom=margin + 0.07, right=0.97, top=0.93)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)
