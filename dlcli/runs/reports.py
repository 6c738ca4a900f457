"""Reports on a finished model: `curves.png` and the confusion matrix of a split (CSV and
PNG), drawn on a worker thread while the model is scored and saved.

`confusion_matrix.csv` has one row per true class and one column per predicted class,
named by the original labels; scikit-learn computes it, `dlcli.runs.plots` draws the pictures.
"""

from __future__ import annotations

import threading

import numpy as np

from dlcli.files import csv_text
from dlcli.runs.runfolder import RunFolder


def write_confusion(
    run: RunFolder,
    stem: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: list,
    plot: bool = True,
    title: str = "",
) -> str:
    """Write `<stem>.csv` (and `<stem>.png`) into the run folder; return the CSV's name."""
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true)
    if y_true.ndim == 2:  # one-hot
        y_true = y_true.argmax(axis=-1)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    rows = [[label, *row.tolist()] for label, row in zip(labels, matrix)]
    run.write_text(f"{stem}.csv", csv_text(rows, ["true \\ predicted", *labels]))
    if plot:
        from dlcli.runs.plots import confusion_figure

        figure = confusion_figure(matrix, labels, title)
        run.save(f"{stem}.png", lambda tmp: figure.savefig(tmp, dpi=80))
    return f"{stem}.csv"


def write_run_reports(
    run: RunFolder,
    rows: list[dict],
    best_epoch: int,
    title: str,
    plots: bool,
    y_test=None,
    predictions=None,
    labels=None,
) -> None:
    """confusion_matrix.csv/.png of the test split (classification) and curves.png."""
    if predictions is not None:
        write_confusion(
            run,
            "confusion_matrix",
            y_test,
            predictions,
            labels,
            plot=plots,
            title=f"{run.id}: test",
        )
    if plots and rows:
        from dlcli.runs.plots import curves_figure

        figure = curves_figure(rows, best_epoch, title)
        run.save("curves.png", lambda tmp: figure.savefig(tmp, dpi=80))


class Background(threading.Thread):
    """Work on a daemon thread whose exception `join()` raises again. TensorFlow and
    matplotlib release the GIL for much of their work, so drawing overlaps scoring."""

    def __init__(self, target, *args, **kwargs):
        super().__init__(daemon=True)
        self.work, self.args, self.kwargs, self.error = target, args, kwargs, None
        self.start()

    def run(self):
        try:
            self.work(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.error = exc

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            raise self.error
