"""Training progress for people and for logs.

On a terminal: a rich progress bar per epoch (steps, loss and metrics, ETA). Elsewhere
(CI logs, pipes): one plain line per epoch and no control characters. Both go to stderr,
so stdout stays free for the run folder's path or `--json`.
"""

from __future__ import annotations

import math
import time


def format_metrics(logs: dict, keys=None) -> str:
    keys = keys or [k for k in logs if k != "learning_rate"]
    parts = []
    for key in keys:
        value = logs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key} {value:.4g}" if math.isfinite(value) else f"{key} {value}")
    return "  ".join(parts)


def progress_callback(keras, console, epochs: int, steps: int, rich_bar: bool):
    """A Keras callback that reports each epoch on `console` (a rich Console on stderr)."""

    class Progress(keras.callbacks.Callback):
        cut = staticmethod(
            lambda: False
        )  # set by the trainer: whether a stop request cut the epoch

        def on_train_begin(self, logs=None):
            self.bar = None
            if rich_bar:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                self.bar = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[metrics]}"),
                    TimeRemainingColumn(),
                    console=console,
                    transient=False,
                )
                self.bar.start()

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            if self.bar is not None:
                self.task = self.bar.add_task(
                    f"epoch {epoch + 1}/{epochs}", total=steps, metrics=""
                )

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is not None:
                self.bar.update(
                    self.task, completed=min(batch + 1, steps), metrics=format_metrics(logs or {})
                )

        def on_epoch_end(self, epoch, logs=None):
            if self.cut():
                return  # a Ctrl-C cut this epoch short: it is not recorded, so not reported
            seconds = time.perf_counter() - self.started
            text = format_metrics(logs or {})
            if self.bar is not None:
                self.bar.update(self.task, completed=steps, metrics=f"{text}  {seconds:.1f}s")
            else:
                console.print(
                    f"epoch {epoch + 1}/{epochs}  {text}  {seconds:.1f}s",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.stop()

    return Progress()
