"""Heartbeats of the node runs this worker process is running, so the reaper can tell a slow node from a dead one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from executions.models import NodeRun, NodeRunStatus

logger = logging.getLogger(__name__)

_active: set[int] = set()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _interval() -> float:
    return max(0.5, settings.FLOWRUNNER_STALE_AFTER / 3)


def _loop() -> None:
    while True:
        time.sleep(_interval())
        with _lock:
            ids = list(_active)
        if not ids:
            continue
        try:
            close_old_connections()
            NodeRun.objects.filter(id__in=ids, status=NodeRunStatus.RUNNING).update(
                heartbeat_at=timezone.now()
            )
        except Exception:  # a database blip: the next beat tries again
            logger.warning("heartbeat failed", exc_info=True)
            connection.close()


def _ensure_thread() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_loop, name="flowrunner-heartbeat", daemon=True)
        _thread.start()


@contextmanager
def beating(node_run_id: int) -> Iterator[None]:
    """Keep `heartbeat_at` of this node run fresh while the block runs."""
    with _lock:
        _ensure_thread()
        _active.add(node_run_id)
    try:
        yield
    finally:
        with _lock:
            _active.discard(node_run_id)
