"""Signals during training: SIGTERM becomes an exception (as Ctrl-C is), so the run folder
can say `interrupted`; both are ignored for the milliseconds of writing the final status."""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt."""


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """SIGTERM raises `Terminated` inside the block (main thread only)."""
    if not main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
