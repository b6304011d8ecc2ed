"""The hub channel layer against the test Redis: one decode per process, local subscribers, pipelined publish."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from core.hub import RedisHubChannelLayer

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="FLOWRUNNER_REDIS_URL not set")


async def _until(condition: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def _layers() -> tuple[RedisHubChannelLayer, RedisHubChannelLayer]:
    # Two layer objects: a web process that listens, a worker that publishes (own connections each).
    return (
        RedisHubChannelLayer(hosts=[settings.REDIS_URL], prefix="hubtest"),
        RedisHubChannelLayer(hosts=[settings.REDIS_URL], prefix="hubtest"),
    )


def test_hub_hands_every_local_subscriber_the_same_decoded_message():
    async def scenario() -> list[list[dict[str, Any]]]:
        # given three local subscribers of one group
        web, worker = _layers()
        seen: list[list[dict[str, Any]]] = [[], [], []]
        callbacks = [seen[i].append for i in range(3)]
        for callback in callbacks:
            await web.hub_add("execution.1", callback)
        # when a worker publishes two messages to the group
        await worker.group_send("execution.1", {"type": "execution.events", "n": 1})
        await worker.group_send("execution.1", {"type": "execution.events", "n": 2})
        await _until(lambda: all(len(s) == 2 for s in seen))
        await web.flush()
        await worker.flush()
        return seen

    seen = async_to_sync(scenario)()
    # then each got both, in order, and all three got the very same dict objects (decoded once)
    assert [[m["n"] for m in s] for s in seen] == [[1, 2]] * 3
    assert seen[0][0] is seen[1][0] is seen[2][0]


def test_hub_group_send_many_reaches_every_group_and_discard_stops_delivery():
    async def scenario() -> tuple[list[str], list[str], int]:
        # given a subscriber of an execution group and one of an account group
        web, worker = _layers()
        execution: list[str] = []
        account: list[str] = []
        on_execution = lambda message: execution.append(message["n"])  # noqa: E731
        on_account = lambda message: account.append(message["n"])  # noqa: E731
        await web.hub_add("execution.2", on_execution)
        await web.hub_add("account.2", on_account)
        # when one message is published to both groups at once, then the execution subscriber leaves
        await worker.group_send_many(["execution.2", "account.2"], {"type": "t", "n": "first"})
        await _until(lambda: execution and account)
        await web.hub_discard("execution.2", on_execution)
        await worker.group_send_many(["execution.2", "account.2"], {"type": "t", "n": "second"})
        await _until(lambda: len(account) == 2)
        await asyncio.sleep(0.1)
        size = web.hub_size()
        await web.flush()
        await worker.flush()
        return execution, account, size

    execution, account, size = async_to_sync(scenario)()
    # then both groups got the first message, only the account group the second
    assert execution == ["first"]
    assert account == ["first", "second"]
    assert size == 1


def test_hub_a_join_racing_the_last_leave_stays_subscribed_and_empty_groups_are_unsubscribed():
    async def scenario() -> tuple[list[str], set[str], int]:
        # given one subscriber on each of 50 groups, and a second one on group 0
        web, worker = _layers()
        got: list[str] = []
        firsts = [lambda message: None for _ in range(50)]
        for i, callback in enumerate(firsts):
            await web.hub_add(f"execution.race{i}", callback)
        late = lambda message: got.append(message["n"])  # noqa: E731
        # when all 50 leave at once while the second one joins group 0 in the middle of it
        leaving = [web.hub_discard(f"execution.race{i}", callback) for i, callback in enumerate(firsts)]
        await asyncio.gather(*leaving[:25], web.hub_add("execution.race0", late), *leaving[25:])
        await worker.group_send("execution.race0", {"type": "t", "n": "after"})
        await _until(lambda: got)
        layer = web._get_layer()
        subscribed = {name for shard in layer._shards for name in shard._subscribed_to}
        size = web.hub_size()
        await web.flush()
        await worker.flush()
        return got, subscribed, size

    got, subscribed, size = async_to_sync(scenario)()
    # then the one who joined gets the group's messages, and only its group is still subscribed
    assert got == ["after"]
    assert size == 1
    assert len(subscribed) == 1 and next(iter(subscribed)).endswith("execution.race0")
