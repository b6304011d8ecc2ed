"""The reaper's passes: one at a time across worker processes."""

from __future__ import annotations

import pytest
import redis
from celery import current_app

from executions.models import NodeRun
from tests.workers.steps import start_execution
from workers import reaper

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not str(current_app.conf.broker_url or "").startswith("redis"), reason="the pass lock lives in Redis"
    ),
]

ONE = """
metadata: {name: one}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


@pytest.fixture
def broker():
    client = redis.Redis.from_url(current_app.conf.broker_url)
    client.delete(reaper.PASS_LOCK)
    yield client
    client.delete(reaper.PASS_LOCK)


def _lost_run(member, sent, settings):
    # a queued run whose message the broker lost (published to nobody: the `sent` fixture captures it)
    settings.FLOWRUNNER_STALE_AFTER = 0.0
    execution = start_execution(member, ONE)
    sent.clear()
    return NodeRun.objects.get(execution=execution)


def test_reaper_a_pass_while_another_runs_does_nothing(member, sent, settings, broker):
    # Given a lost run, and another pass holding the lock
    run = _lost_run(member, sent, settings)
    other = broker.lock(reaper.PASS_LOCK, timeout=30)
    assert other.acquire(blocking=False)
    # When a pass starts
    result = reaper.reap()
    # Then it steps aside without re-sending anything, and leaves the other's lock alone
    assert result["skipped"] == 1 and result["resent"] == 0 and sent == []
    assert broker.get(reaper.PASS_LOCK) is not None
    other.release()
    assert run.id


def test_reaper_a_pass_takes_and_gives_back_the_lock(member, sent, settings, broker):
    # Given a lost run and no other pass
    run = _lost_run(member, sent, settings)
    # When a pass runs
    result = reaper.reap()
    # Then it re-sent the run and released the lock for the next pass
    assert "skipped" not in result and result["resent"] == 1
    assert [node_run_id for _, node_run_id, _ in sent] == [run.id]
    assert broker.get(reaper.PASS_LOCK) is None
