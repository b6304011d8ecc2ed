"""A live stack's housekeeping (beat's reaper and admission passes), paused while a fault-injecting stack runs."""

from __future__ import annotations

import re
import time
from typing import Any

from tests.integration.processes import STARTUP_TIMEOUT, StackError

# Beat's messages in Redis carry Celery's headers in clear (workers/reaper.py reads them the same way).
_HOUSEKEEPING_MESSAGE = re.compile(rb'"task": "flowrunner\.(?:reap|admit)"')
_HOUSEKEEPING_TASKS = frozenset({"flowrunner.reap", "flowrunner.admit"})


class Housekeeping:
    """Pausing and resuming a LiveStack's beats (it provides children, paused_beats, env, base_queues,
    start_beat, running_workers and worker_hostname)."""

    children: dict[str, Any]
    paused_beats: list[str]
    env: dict[str, str]
    base_queues: Any

    def pause_housekeeping(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Stop every beat of the stack (the clock of its reaper and admission sweep, which act on the whole
        database) and wait until no pass they sent is left to run; the workers keep serving their queues, so
        the stack's own runs keep moving (and keep their heartbeats)."""
        for name, child in list(self.children.items()):
            if name.startswith("beat") and child.alive():
                child.stop()
                self.paused_beats.append(name)
        self._drop_queued_housekeeping()
        deadline = time.monotonic() + timeout
        while busy := self._housekeeping_taken():
            if time.monotonic() > deadline:
                raise StackError(f"housekeeping tasks still running after {timeout:.0f}s: {busy}")
            time.sleep(0.2)

    def resume_housekeeping(self) -> None:
        """Start the beats `pause_housekeeping` stopped."""
        while self.paused_beats:
            self.start_beat(self.paused_beats.pop(0))

    def control_app(self):  # noqa: ANN201
        """A Celery app on the stack's broker, for control commands (ping, inspect)."""
        from flowrunner.celery import app

        return app

    def _drop_queued_housekeeping(self) -> None:
        # Passes still waiting in the broker (beat sends them to the default queues) would run at once; dropping
        # them loses nothing, beat sends fresh ones when it is back.
        import redis

        client = redis.Redis.from_url(self.env["FLOWRUNNER_REDIS_URL"])
        try:
            for queue in self.base_queues:
                for raw in client.lrange(queue, 0, -1):
                    if _HOUSEKEEPING_MESSAGE.search(raw):
                        client.lrem(queue, 1, raw)
        finally:
            client.close()

    def _housekeeping_taken(self) -> list[str]:
        """Reaper and admission tasks a running worker has taken (reserved or running): "name@host: task"."""
        names = [self.worker_hostname(name) for name in self.running_workers()]
        if not names:
            return []
        inspect = self.control_app().control.inspect(destination=names, timeout=2.0, limit=len(names))
        try:
            replies = (inspect.active() or {}, inspect.reserved() or {})
        except Exception:
            return []  # the broker is gone: its workers take nothing more from it
        taken = []
        for reply in replies:
            for host, tasks in reply.items():
                taken += [
                    f"{host}: {task.get('name')}" for task in tasks if task.get("name") in _HOUSEKEEPING_TASKS
                ]
        return taken
