"""Signals during training: Ctrl-C and SIGTERM end a run as `interrupted`, never a crash.

While a run folder is open, SIGTERM becomes an exception (as Ctrl-C is), so the folder can
say `interrupted`. Elsewhere the `dlcli` program ends at once with 130 (`dlcli.cli.program`):
an exception raised from a handler can land where Python swallows it (a garbage-collector
callback), and before a run folder exists there is nothing to save. Inside `fit`, an exception raised
from a signal handler can land in the middle of a TensorFlow C++ call and crash the process
(a segfault in `convert_to_eager_tensor`, about one SIGTERM in four here), so there the first
signal only asks Keras to stop after the current batch (`StopRequest`) and is raised once
`fit` has returned; a second one raises at once. Both are ignored for the milliseconds of
writing the final status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from dlcli.training import handoff


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt."""


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_for(signum, frame=None):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt()
    raise Terminated()


@contextlib.contextmanager
def signals_raise():
    """Inside the block SIGTERM raises `Terminated` and SIGINT `KeyboardInterrupt`, whatever
    handlers the process had (main thread only)."""
    if not main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, _raise_for) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class StopRequest:
    """The first SIGINT/SIGTERM during `fit`, held until `fit` returns.

    Attributes:
        requested: the signal number received, or None.
        on_request: called once, from the handler, when the first signal arrives; it must
            only set flags (training sets `model.stop_training`).
    """

    def __init__(self, on_request=None):
        self.requested = None
        self.on_request = on_request

    def handle(self, signum, frame):
        if self.requested is not None:  # the second signal: stop at once
            _raise_for(signum)
        self.requested = signum
        if self.on_request is not None:
            self.on_request()

    def raise_if_requested(self) -> None:
        """Raise KeyboardInterrupt or Terminated for the signal received, if any."""
        if self.requested is not None:
            _raise_for(self.requested)


@contextlib.contextmanager
def stop_after_batch(on_request=None):
    """Inside the block the first SIGINT/SIGTERM makes a `StopRequest` rather than an
    exception; the caller raises it after the block (main thread only)."""
    request = StopRequest(on_request)
    if not main_thread():
        yield request
        return
    saved = {sig: signal.signal(sig, request.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def held():
    """Ignore SIGINT/SIGTERM inside the block (writing run.json's final status)."""
    if not main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def follow_parent() -> None:
    """In a process `dlcli sweep` started (`handoff.current.parent`): end as SIGTERM ends it
    (a run marked `interrupted`) when the sweep's process dies, `kill -9` included (Linux),
    so no trial trains on unwatched after its sweep is gone."""
    parent = handoff.current.parent
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the sweep died before prctl took hold
        os.kill(os.getpid(), signal.SIGTERM)
