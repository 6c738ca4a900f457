"""Concurrent requests answered together: each request's samples wait in a queue, one model
call answers everything queued, and its outputs become the answers' values in one go. The
queued samples become the model's input together too (an array run's JSON lists in one
numpy call); a request whose samples do not fit gets its own 422, the others their answers.

The wait is bounded by one model call: requests that arrive while the model runs form the
next batch, so a lone client waits for nothing and throughput grows with load. An engine
that answers within a millisecond (`Engine.inline`) runs on the event loop itself (a thread
hop would cost more than the call); a slower one in one worker thread, while the event loop
goes on reading requests.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dlcli.serve.engines import CHUNK, Engine


class Batcher:
    """`await batcher(samples)`: `results(engine(batch))`'s share for one request's samples,
    computed with whatever else is queued. `join(parts)` makes a batch's model input of its
    requests' samples: `(x, {index: problem})`, a part that does not fit raising its problem
    to its own request only. `results` turns a batch's outputs into columns (lists, one
    entry per sample), and each request gets its slice of every column."""

    def __init__(self, engine: Engine, join, results, on_batch=None):
        self.engine, self.results, self.join = engine, results, join
        self.queue: list[tuple[np.ndarray | list, asyncio.Future]] = []
        self.busy = False  # a batch is in the worker thread
        self.scheduled = False  # a flush is on the event loop's list
        self.on_batch = on_batch  # called with each batch's row count (metrics)
        self.thread = None if engine.inline else ThreadPoolExecutor(1, "dlcli-model")

    def __call__(self, samples: np.ndarray | list) -> asyncio.Future:
        """The future of `samples`' share of the answers (a future, not a coroutine: one
        frame less to make and resume per request)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append((samples, future))
        if not (self.busy or self.scheduled):
            self.scheduled = True
            loop.call_soon(self._flush)  # after the requests already on this turn of the loop
        return future

    def _take(self) -> list:
        """The next batch: the queue's first requests up to `CHUNK` rows (at least one),
        less those whose client left (they are not computed for)."""
        queue, rows = self.queue, 0
        for end, item in enumerate(queue):
            rows += len(item[0])
            if rows > CHUNK and end:
                break
        else:
            end = len(queue)
        self.queue = queue[end:]
        return [item for item in queue[:end] if not item[1].done()]

    def _flush(self) -> None:
        self.scheduled = False
        batch = self._take()
        try:
            x, problems = self.join([item[0] for item in batch]) if batch else (None, {})
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
            self._hand_out(batch, None, exc)
            batch, problems = [], {}
        for i, problem in problems.items():
            batch[i][1].set_exception(problem)
        if problems:
            batch = [item for i, item in enumerate(batch) if i not in problems]
        if not batch:
            self._next()
            return
        if self.on_batch is not None:
            self.on_batch(len(x))
        if self.thread is None:
            try:
                self._hand_out(batch, self._compute(x), None)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
                self._hand_out(batch, None, exc)
            self._next()
            return
        self.busy = True
        done = asyncio.get_running_loop().run_in_executor(self.thread, self._compute, x)
        done.add_done_callback(lambda f: self._finished(batch, f))

    def _compute(self, x: np.ndarray) -> tuple[list, ...]:
        return self.results(self.engine(x))

    def _finished(self, batch, future) -> None:
        self.busy = False
        error = future.exception()
        self._hand_out(batch, None if error else future.result(), error)
        self._next()

    def _next(self) -> None:
        if self.queue and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    @staticmethod
    def _hand_out(batch, columns, error) -> None:
        at = 0
        for x, future in batch:
            end = at + len(x)
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(tuple([column[at:end] for column in columns]))
            at = end

    def close(self) -> None:
        if self.thread is not None:
            self.thread.shutdown(wait=True)


__all__ = ["Batcher"]
