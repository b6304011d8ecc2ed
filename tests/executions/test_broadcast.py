"""Broadcasting committed frames: published from the caller's thread when nothing of the process is queued."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from core.hub import RedisHubChannelLayer
from executions import broadcast

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="FLOWRUNNER_REDIS_URL not set")


def _frames(execution_id: str, *seqs: int) -> list[dict[str, Any]]:
    return [{"type": "node", "execution_id": execution_id, "seq": seq} for seq in seqs]


def test_broadcast_direct_publish_reaches_both_groups_as_the_layer_would_deliver(monkeypatch):
    # Given a web-side subscriber of the execution's and the account's groups
    layer = RedisHubChannelLayer(hosts=[settings.REDIS_URL], prefix="bctest")
    publisher = broadcast._DirectPublisher.for_layer(
        RedisHubChannelLayer(hosts=[settings.REDIS_URL], prefix="bctest")
    )
    assert publisher is not None

    async def scenario() -> tuple[list[dict], list[dict]]:
        execution: list[dict] = []
        account: list[dict] = []
        await layer.hub_add("execution.e1", execution.append)
        await layer.hub_add("account.a1", account.append)
        # When a transaction's frames are published from this thread
        await asyncio.to_thread(publisher.publish, _frames("e1", 4, 5), "a1")
        async with asyncio.timeout(3):
            while not (execution and account):
                await asyncio.sleep(0.01)
        await layer.flush()
        return execution, account

    execution, account = async_to_sync(scenario)()
    # Then each group got one message holding both frames in seq order, addressed to the account
    for messages in (execution, account):
        assert len(messages) == 1
        assert messages[0]["type"] == broadcast.EVENTS_MESSAGE_TYPE
        assert [frame["seq"] for frame in messages[0]["frames"]] == [4, 5]
        assert messages[0]["account_id"] == "a1"


def test_broadcast_direct_publish_waits_its_turn_behind_queued_frames(monkeypatch):
    # Given frames of this process still queued for the sender thread
    class Busy:
        pid = broadcast.os.getpid()
        pending = 1

    monkeypatch.setattr(broadcast, "_sender", Busy())
    published: list[Any] = []
    monkeypatch.setattr(broadcast, "_direct_publisher", lambda: published.append(1))
    # When a finish's frames would be published directly
    handled = broadcast._publish_direct(_frames("e1", 9), "a1")
    # Then they are not (they go behind the queued ones, in order)
    assert handled is False and published == []


def test_broadcast_only_pubsub_layers_with_plain_addresses_publish_directly():
    # Given the layers a deployment may configure
    pubsub = RedisHubChannelLayer(hosts=[settings.REDIS_URL])
    sentinel = RedisHubChannelLayer(hosts=[{"sentinels": [("127.0.0.1", 26379)], "master_name": "m"}])
    # Then only a pub/sub layer on plain Redis addresses gets a direct publisher
    assert broadcast._DirectPublisher.for_layer(pubsub) is not None
    assert broadcast._DirectPublisher.for_layer(sentinel) is None
    assert broadcast._DirectPublisher.for_layer(object()) is None


def test_broadcast_frames_ride_with_the_next_task_or_go_alone_when_there_is_none(monkeypatch):
    # given a direct publisher on the broker's own Redis server
    publisher = broadcast._DirectPublisher.for_layer(RedisHubChannelLayer(hosts=[settings.REDIS_URL]))
    assert publisher is not None and publisher.ride_with_tasks
    offered: list[Any] = []
    alone: list[Any] = []

    def ride(commands, then, *, server_url, event_follows):
        assert server_url == settings.REDIS_URL
        assert event_follows is settings.CELERY_TASK_SEND_SENT_EVENT
        offered.append(commands)
        then()
        return put

    monkeypatch.setattr(broadcast.broker_transport, "publish_with_next_put", ride)
    monkeypatch.setattr(publisher, "execute", alone.append)
    ran: list[int] = []
    # when the next task is published by `then`
    put = True
    publisher.publish(_frames("e1", 4), "a1", lambda: ran.append(1))
    # then the frames were handed to that publish (both groups), and not sent again
    assert len(offered) == 1 and [name for name, _ in offered[0]] == [
        "asgi__group__execution.e1",
        "asgi__group__account.a1",
    ]
    assert alone == [] and ran == [1]
    # and when `then` published nothing, they are sent on their own
    put = False
    publisher.publish(_frames("e1", 5), "a1", lambda: ran.append(2))
    assert len(alone) == 1 and ran == [1, 2]
