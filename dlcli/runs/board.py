"""TensorBoard event files for a run's epoch scalars, without TensorFlow.

Keras's `TensorBoard` callback writes through `tf.summary`, so it imports TensorFlow (≈ 3 s
here) even on the JAX and torch backends, and `tensorboard`'s own `EventFileWriter` does too
(its `tf.io.gfile` is TensorFlow whenever TensorFlow is installed). `ScalarBoard` writes the
same files with the `tensorboard` package's protobufs and record framing on a plain file:
`tensorboard/train/` and `tensorboard/validation/`, one `events.out.tfevents.*` file each,
tags `epoch_<metric>` (and `epoch_learning_rate`) as tensor summaries of the scalars
plugin, exactly what `tf.summary.scalar` writes, so `tensorboard --logdir` shows them the same.

The writing (and the import of `tensorboard`'s modules, ≈ 0.3 s) happens on a worker
thread, off the training path: each epoch's scalars are queued and written and flushed
there; `close()` waits for the queue to drain.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from pathlib import Path

_STOP = object()


class ScalarBoard:
    """Scalars per split and step, written to `folder/<split>/events.out.tfevents.*`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="dlcli-tensorboard", daemon=True)
        self._thread.start()

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        """Queue `{tag: value}` for `split` ('train' or 'validation') at `step`."""
        self._queue.put((split, step, time.time(), dict(values)))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and close the files (waits at most `timeout` seconds)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _work(self) -> None:
        files: dict = {}
        try:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.plugins.scalar.summary_v2 import scalar_pb
            from tensorboard.summary.writer.record_writer import RecordWriter

            def writer(split: str):
                if split not in files:
                    folder = self.folder / split
                    folder.mkdir(parents=True, exist_ok=True)
                    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{len(files)}.v2"
                    files[split] = RecordWriter(open(folder / name, "wb"))  # noqa: SIM115 - closed below
                    files[split].write(
                        event_pb2.Event(
                            wall_time=time.time(), file_version="brain.Event:2"
                        ).SerializeToString()
                    )
                return files[split]

            while (item := self._queue.get()) is not _STOP:
                split, step, wall, values = item
                out = writer(split)
                for tag, value in values.items():
                    event = event_pb2.Event(
                        wall_time=wall, step=step, summary=scalar_pb(tag, float(value))
                    )
                    out.write(event.SerializeToString())
                out.flush()
        except BaseException as exc:  # noqa: BLE001 - a full disk: the run goes on without its scalars
            self.error = exc
        finally:
            for out in files.values():
                try:
                    out.close()
                except OSError:
                    pass
