"""A node's timeout around its own work only: claim and finish are never interrupted by it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded


def _expired(signum: int, frame: object) -> None:
    raise SoftTimeLimitExceeded()


@contextmanager
def work_time_limit(seconds: float | None) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded in the block after `seconds`. A timer signal can only interrupt the main
    thread (a prefork or solo worker's task thread); elsewhere (the embedded thread pool) the kinds' own
    limits — the script sandbox's timeout, the HTTP client's — bound the work."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
