"""Hostile WebSocket clients on the live stack: bad and huge frames, floods; others served, memory bounded."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.api_steps import create_flow, start_run
from tests.security.helpers import rss_kib, transform_flow, wait_all

pytestmark = [pytest.mark.faults]

FLOOD_FRAMES = int(os.environ.get("FLOWRUNNER_SECURITY_WS_FLOOD", "2000"))
PADDED_FRAMES = int(os.environ.get("FLOWRUNNER_SECURITY_WS_PADDED", "1000"))
# What a flood may leave daphne holding: the flow control keeps at most ~1 MiB of frames waiting.
RSS_GROWTH_LIMIT_KIB = 32 * 1024
PONG_WITHIN = 3.0


def _connect(live_stack, user, **kwargs):
    kwargs.setdefault("open_timeout", 20)
    kwargs.setdefault("max_size", None)
    return connect(live_stack.ws_url, additional_headers=user.headers, **kwargs)


async def _answer(ws, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _pong(ws) -> float:
    """Round trip of one ping (frames about executions that arrive meanwhile are skipped)."""
    started = time.monotonic()
    await ws.send('{"type": "ping"}')
    while (await _answer(ws))["type"] != "pong":
        pass
    return time.monotonic() - started


class Pinger:
    """A second, well-behaved client that pings every 50 ms while a flood runs; records each round trip."""

    def __init__(self, live_stack, user) -> None:
        self.live_stack, self.user = live_stack, user
        self.latencies: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Pinger:
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(ready))
        await asyncio.wait_for(ready.wait(), 20)
        return self

    async def _run(self, ready: asyncio.Event) -> None:
        async with _connect(self.live_stack, self.user) as ws:
            ready.set()
            while not self._stop.is_set():
                self.latencies.append(await _pong(ws))
                await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, 20)

    @property
    def worst(self) -> float:
        return max(self.latencies)


BAD_FRAMES: list[str | bytes] = [
    "not json",
    "[1, 2]",
    '"subscribe"',
    "{}",
    '{"type": "launch"}',
    '{"type": ["ping"]}',
    '{"type": "subscribe"}',
    '{"type": "subscribe", "execution_id": 42}',
    '{"type": "subscribe", "execution_id": "../../etc/passwd"}',
    '{"type": "subscribe", "execution_id": "\\u0000"}',
    '{"type": "subscribe", "execution_id": "\\ud800"}',
    json.dumps({"type": "subscribe", "execution_id": "a" * 10_000}),
    json.dumps({"type": "subscribe", "execution_id": str(uuid.uuid4()), "since": -1}),
    json.dumps({"type": "subscribe", "execution_id": str(uuid.uuid4()), "since": True}),
    json.dumps({"type": "subscribe", "execution_id": str(uuid.uuid4()), "since": 1.5}),
    f'{{"type": "subscribe", "execution_id": "{uuid.uuid4()}", "since": 1{"0" * 40}}}',
    f'{{"type": "subscribe", "execution_id": "{uuid.uuid4()}", "since": 1e400}}',
    # well formed, but no such execution
    json.dumps({"type": "subscribe", "execution_id": str(uuid.uuid4())}),
    '{"type": "unsubscribe", "execution_id": null}',
    "[" * 50_000,  # nesting bomb under the frame size limit
    '{"a": ' * 20_000 + "1" + "}" * 20_000,
    "x" * 100_000,  # over FLOWRUNNER_WS_MAX_FRAME_BYTES (64 KiB), under daphne's 1 MiB
    b"\x00\x01binary",
]


def test_every_malformed_frame_gets_an_error_and_the_connection_stays_open(live_stack, live_user):
    async def scenario() -> list[dict[str, Any]]:
        answers = []
        async with _connect(live_stack, live_user) as ws:
            for frame in BAD_FRAMES:
                # when each bad frame is sent
                await ws.send(frame)
                answers.append(await _answer(ws))
            # then the same connection still answers a ping
            await _pong(ws)
        return answers

    answers = asyncio.run(scenario())
    # then each got exactly one `error` frame, with a message, in the one server frame shape
    assert len(answers) == len(BAD_FRAMES)
    for frame, answer in zip(BAD_FRAMES, answers, strict=True):
        assert answer["type"] == "error", (frame[:80], answer)
        assert answer["message"] and {"execution_id", "seq", "timestamp"} <= set(answer), answer


def test_a_frame_over_daphnes_limit_closes_only_that_connection(live_stack, live_user):
    async def scenario() -> tuple[int | None, float]:
        async with _connect(live_stack, live_user) as other:
            # given a connection that sends 2 MiB in one frame (daphne reads at most 1 MiB per message)
            async with _connect(live_stack, live_user) as ws:
                # when the server reads it (it may drop the connection while the frame is still being sent)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.send("x" * (2 * 1024 * 1024))
                    await _answer(ws)
            # then that connection is dropped (autobahn fails it, 1009 or no close frame at all), and another
            # connection is served as before
            return closed.value.rcvd.code if closed.value.rcvd else None, await _pong(other)

    code, latency = asyncio.run(scenario())
    assert code in (None, 1009)
    assert latency < PONG_WITHIN


def test_a_flood_of_subscribes_is_answered_frame_by_frame_while_others_stay_fast(
    live_stack, live_user, make_live_user
):
    web, other = live_stack.children["web"].pid, make_live_user()
    rss_before = rss_kib(web)

    async def scenario() -> tuple[dict[str, int], float, Pinger]:
        async with Pinger(live_stack, other) as pinger:
            async with _connect(live_stack, live_user) as ws:
                # given a client that fires thousands of subscribes (to ids that do not exist) and bad frames
                frames = [json.dumps({"type": "subscribe", "execution_id": str(uuid.uuid4())})] * FLOOD_FRAMES
                frames += ["{broken"] * (FLOOD_FRAMES // 3)
                started = time.monotonic()

                async def flood() -> None:
                    for frame in frames:
                        await ws.send(frame)

                sender = asyncio.create_task(flood())
                kinds: dict[str, int] = {}
                for _ in frames:
                    kind = (await _answer(ws, timeout=60))["type"]
                    kinds[kind] = kinds.get(kind, 0) + 1
                await sender
                return kinds, time.monotonic() - started, pinger

    kinds, elapsed, pinger = asyncio.run(scenario())
    rss_after = rss_kib(web)
    print(
        f"\nws flood: {FLOOD_FRAMES + FLOOD_FRAMES // 3} frames answered in {elapsed:.1f}s "
        f"({(FLOOD_FRAMES + FLOOD_FRAMES // 3) / elapsed:.0f}/s); other client's pings: "
        f"{len(pinger.latencies)} "
        f"round trips, worst {pinger.worst * 1000:.0f} ms; daphne RSS {rss_before // 1024} -> "
        f"{rss_after // 1024} MiB"
    )
    # then every frame got its own `error`, the other client's pings stayed fast, and memory stayed put
    assert kinds == {"error": FLOOD_FRAMES + FLOOD_FRAMES // 3}
    assert pinger.latencies and pinger.worst < PONG_WITHIN
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB


def test_a_client_sending_faster_than_it_is_served_is_slowed_not_buffered(
    live_stack, live_user, make_live_user
):
    web, other = live_stack.children["web"].pid, make_live_user()
    rss_before = rss_kib(web)
    padding = "x" * 60_000  # just under the 64 KiB frame limit, so each one is parsed and answered
    frame = json.dumps({"type": "subscribe", "execution_id": str(uuid.uuid4()), "padding": padding})

    async def scenario() -> tuple[int, float, int, Pinger]:
        peak = 0
        async with Pinger(live_stack, other) as pinger:
            async with _connect(live_stack, live_user) as ws:
                # given a client that pushes ~60 MB of valid frames as fast as its socket takes them
                started = time.monotonic()

                async def flood() -> None:
                    for _ in range(PADDED_FRAMES):
                        await ws.send(frame)

                sender = asyncio.create_task(flood())
                answered = 0
                for _ in range(PADDED_FRAMES):
                    await _answer(ws, timeout=60)
                    answered += 1
                    if answered % 100 == 0:
                        peak = max(peak, rss_kib(web))
                await sender
                return answered, time.monotonic() - started, peak, pinger

    answered, elapsed, peak, pinger = asyncio.run(scenario())
    print(
        f"\nws padded flood: {PADDED_FRAMES} x {len(frame) // 1024} KiB answered in {elapsed:.1f}s; "
        f"daphne RSS {rss_before // 1024} MiB, peak {peak // 1024} MiB; other client's worst ping "
        f"{pinger.worst * 1000:.0f} ms"
    )
    # then the server read it only as fast as it answered (every frame answered), so its memory stayed bounded
    assert answered == PADDED_FRAMES
    assert peak - rss_before < RSS_GROWTH_LIMIT_KIB
    assert pinger.worst < PONG_WITHIN


def _many_finished_executions(api, count: int) -> list[str]:
    """`count` finished executions of one flow: one real run, and copies of its row through the ORM."""
    from executions.models import Execution

    first = start_run(api, create_flow(api, transform_flow("many", "return 1")))
    wait_all(api, [first])
    template = Execution.objects.get(id=first)
    copies = [
        Execution(
            account_id=template.account_id,
            flow_id=template.flow_id,
            flow_version_id=template.flow_version_id,
            status="completed",
            progress=100.0,
            results={},
            started_at=template.started_at,
            finished_at=template.finished_at,
        )
        for _ in range(count - 1)
    ]
    Execution.objects.bulk_create(copies, batch_size=500)
    return [first] + [str(copy.id) for copy in copies]


def test_subscribing_to_thousands_of_ids_is_capped_and_leaves_nothing_behind(
    live_stack, live_user, live_api, live_db
):
    # given more finished executions than one connection may watch
    from django.conf import settings

    cap = int(live_stack.env.get("FLOWRUNNER_WS_MAX_SUBSCRIPTIONS", settings.FLOWRUNNER_WS_MAX_SUBSCRIPTIONS))
    ids = _many_finished_executions(live_api, cap + 100)

    async def scenario() -> tuple[dict[str, int], float, float]:
        kinds: dict[str, int] = {}
        async with _connect(live_stack, live_user) as ws:
            started = time.monotonic()
            # when one client subscribes to all of them at once
            for execution_id in ids:
                await ws.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
            # (each subscription answers a snapshot and `complete`; each refused one an error)
            expected = 2 * cap + 100
            for _ in range(expected):
                kind = (await _answer(ws, timeout=60))["type"]
                kinds[kind] = kinds.get(kind, 0) + 1
            elapsed = time.monotonic() - started
            latency = await _pong(ws)
        return kinds, elapsed, latency

    kinds, elapsed, latency = asyncio.run(scenario())
    print(f"\nws: {len(ids)} subscribes answered in {elapsed:.1f}s ({len(ids) / elapsed:.0f}/s)")
    # then the first `cap` are served, the rest refused with an error, and the connection still answers
    assert kinds == {"status": cap, "complete": cap, "error": 100}
    assert latency < PONG_WITHIN
    # and once it closed, none of those executions' channel groups still lists it
    client = redis.Redis.from_url(live_stack.env["FLOWRUNNER_REDIS_URL"])
    try:
        deadline = time.monotonic() + 10
        while True:
            wanted = set(ids)
            left = client.scan_iter(match="asgi*group*execution.*", count=1000)
            watched = [key for key in left if key.decode().rsplit(".", 1)[-1] in wanted]
            members = sum(client.zcard(key) for key in watched)
            if members == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        client.close()
    assert members == 0
