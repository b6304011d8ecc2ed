"""The harness itself: the real stack comes up, reaches PostgreSQL and Redis, and sees its workers; a stack
that injects faults pauses the other stacks' beats while it runs."""

import json
import os
import uuid
from pathlib import Path

import pytest
import redis

from tests.integration import harness
from tests.integration.harness import LiveStack


@pytest.mark.integration
def test_live_stack_is_healthy(live_stack):
    response = live_stack.health()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "ok"
    assert body["workers"] >= 1
    # The children run on the pytest-django test database, not the developer's one.
    assert live_stack.env["FLOWRUNNER_POSTGRES_DATABASE"].startswith("test_")


# Stand-ins for daphne and beat: the bookkeeping between stacks is under test, not the processes.
_IDLE = ["-c", "import time; time.sleep(120)"]


class _IdleStack(LiveStack):
    def web_argv(self) -> list[str]:
        return _IDLE

    def start_beat(self, name: str = "beat"):  # noqa: ANN201
        return self._spawn(name, _IDLE)

    def wait_healthy(self, min_workers: int = 1, timeout: float = 0) -> dict:
        return {}

    def flush_redis(self) -> None:
        pass


def _idle_stack(tmp_path: Path, name: str, queue: str, *, exclusive: bool = False) -> _IdleStack:
    from django.conf import settings

    env = {**os.environ, "FLOWRUNNER_REDIS_URL": settings.REDIS_URL}
    return _IdleStack(
        workdir=tmp_path / name, env=env, default_workers=(), base_queues=(queue,), exclusive=exclusive
    )


def _message(task: str) -> bytes:
    return json.dumps({"body": "", "headers": {"task": task, "argsrepr": "[1]"}}).encode()


def test_an_exclusive_stack_pauses_the_other_stacks_beats_until_it_stops(tmp_path, monkeypatch):
    from django.conf import settings

    monkeypatch.setattr(harness, "_RUNNING", [])  # the session's own stacks stay out of it
    queue = f"harness-test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        # Given a running stack with its beat, a reaper pass and a node task waiting in its queue
        shared = _idle_stack(tmp_path, "shared", queue).start()
        client.rpush(queue, _message("flowrunner.reap"), _message("flowrunner.run_node"))
        beat_pid = shared.children["beat"].pid
        # When a stack that injects faults starts
        faulty = _idle_stack(tmp_path, "faulty", f"{queue}-faulty", exclusive=True).start()
        # Then the shared stack's beat is stopped and the waiting pass dropped; the node task stays
        assert not shared.children["beat"].alive()
        assert client.lrange(queue, 0, -1) == [_message("flowrunner.run_node")]
        # And a stack started meanwhile waits with its beat too
        late = _idle_stack(tmp_path, "late", f"{queue}-late").start()
        assert "beat" not in late.children
        # When the faulty stack stops, Then both beats run (a new process for the paused one)
        faulty.stop_all()
        assert shared.children["beat"].alive() and shared.children["beat"].pid != beat_pid
        assert late.children["beat"].alive()
    finally:
        for stack in list(harness._RUNNING):
            stack.stop_all()
        client.delete(queue)
        client.close()
