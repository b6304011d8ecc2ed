"""Scenario d: commit-to-receipt latency of live frames to many WebSocket subscribers vs raw Redis pub/sub."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from statistics import median
from typing import Any

from celery import group

from bench import flows
from bench.baseline_tasks import publish
from bench.config import Config
from bench.driver import Bench, start_many
from bench.stats import scenario_result, summary

LIVE_TYPES = ("status", "node", "log")
CONNECT_PARALLEL = 50
TIMEOUT = 300.0


def _sent_at(frame: dict[str, Any]) -> float:
    return datetime.fromisoformat(frame["timestamp"]).timestamp()


class Receipts:
    """Latencies (ms) of every live frame, frames per subscriber, frame sizes, and each subscriber's span."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.frames: list[int] = []
        self.sizes: list[int] = []
        self.spans: list[float] = []

    def shape(self) -> tuple[int, float, int]:
        """(frames per subscriber, seconds between frames, payload filler) for the baseline to mimic."""
        count = max(1, round(median(self.frames))) if self.frames else 1
        gap = min(0.005, median(self.spans) / count) if self.spans else 0.0
        filler = max(0, round(median(self.sizes)) - 120) if self.sizes else 0
        return count, gap, filler


async def _subscriber(bench: Bench, execution_id: str, ready: asyncio.Event, out: Receipts) -> None:
    try:
        async with bench.ws() as ws:
            await ws.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
            snapshot = json.loads(await ws.recv())
            if snapshot["type"] != "status":
                raise RuntimeError(f"subscribe answered {snapshot}")
            ready.set()
            await _read_live(ws, snapshot["seq"], out)
    finally:
        ready.set()  # a subscriber that failed must not keep the round waiting; its task re-raises


async def _read_live(ws: Any, after: int, out: Receipts) -> None:
    count, first, last = 0, None, None
    async with asyncio.timeout(TIMEOUT):
        async for raw in ws:
            now = time.time()
            frame = json.loads(raw)
            if frame["type"] == "complete":
                break
            if frame["type"] in LIVE_TYPES and frame["seq"] > after:
                out.latencies.append((now - _sent_at(frame)) * 1000)
                out.sizes.append(len(raw))
                count += 1
                first = first or now
                last = now
    out.frames.append(count)
    out.spans.append((last - first) if first and last else 0.0)


async def _flowrunner_round(bench: Bench, flow_id: str, executions: int, subscribers: int) -> Receipts:
    """Runs queued with the consumer paused; every subscriber has its snapshot before the worker resumes."""
    out = Receipts()
    await asyncio.to_thread(bench.stack.pause)
    async with bench.http() as http:
        ids = await start_many(http, flow_id, executions)
    targets = [ids[i % len(ids)] for i in range(subscribers)]
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    readies = [asyncio.Event() for _ in targets]

    async def opened(execution_id: str, ready: asyncio.Event) -> None:
        async with gate:
            task = asyncio.create_task(_subscriber(bench, execution_id, ready, out))
            await asyncio.wait([task, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        await task

    tasks = [asyncio.create_task(opened(e, r)) for e, r in zip(targets, readies, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), TIMEOUT)
    failed = [t for t in tasks if t.done() and t.exception() is not None]
    if failed:
        await asyncio.to_thread(bench.stack.resume)
        raise failed[0].exception()
    await asyncio.to_thread(bench.stack.resume)
    await asyncio.gather(*tasks)
    return out


async def _baseline_round(
    bench: Bench, channels: int, subscribers: int, shape: tuple[int, float, int]
) -> Receipts:
    """The same number of subscribers and frames over plain Redis pub/sub, published by the same worker."""
    import redis.asyncio as aioredis
    from django.conf import settings

    count, gap, filler = shape
    out = Receipts()
    prefix = f"bench:live:{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}:{i}" for i in range(channels)]
    clients, pubsubs = [], []
    for i in range(subscribers):
        client = aioredis.from_url(settings.REDIS_URL)
        pubsub = client.pubsub()
        await pubsub.subscribe(names[i % channels])
        clients.append(client)
        pubsubs.append(pubsub)

    subscribed = [asyncio.Event() for _ in pubsubs]

    async def receive(pubsub: Any, ready: asyncio.Event) -> None:
        seen, first, last = 0, None, None
        async with asyncio.timeout(TIMEOUT):
            async for message in pubsub.listen():
                if message["type"] == "subscribe":
                    ready.set()
                if message["type"] != "message":
                    continue
                now = time.time()
                frame = json.loads(message["data"])
                out.latencies.append((now - _sent_at(frame)) * 1000)
                out.sizes.append(len(message["data"]))
                seen += 1
                first = first or now
                last = now
                if frame["seq"] >= count:
                    break
        out.frames.append(seen)
        out.spans.append((last - first) if first and last else 0.0)

    readers = [asyncio.create_task(receive(p, r)) for p, r in zip(pubsubs, subscribed, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in subscribed)), TIMEOUT)
    await asyncio.to_thread(lambda: group(publish.s(n, count, gap, filler) for n in names).apply_async())
    try:
        await asyncio.gather(*readers)
    finally:
        for pubsub, client in zip(pubsubs, clients, strict=True):
            await pubsub.aclose()
            await client.aclose()
    return out


async def _shape(bench: Bench, flow_id: str, cfg: Config, executions: int) -> tuple[Receipts, Receipts]:
    sizes = cfg.sizes
    ours, theirs = Receipts(), Receipts()
    for index in range(sizes.live_warmup + sizes.live_rounds):
        a = await _flowrunner_round(bench, flow_id, executions, sizes.live_subscribers)
        b = await _baseline_round(bench, executions, sizes.live_subscribers, a.shape())
        if index >= sizes.live_warmup:
            for mine, got in ((ours, a), (theirs, b)):
                mine.latencies += got.latencies
                mine.frames += got.frames
                mine.sizes += got.sizes
    return ours, theirs


def _result(
    name: str, title: str, ours: Receipts, theirs: Receipts, details: dict[str, Any]
) -> dict[str, Any]:
    fr, base = summary(ours.latencies, "ms"), summary(theirs.latencies, "ms")
    return scenario_result(
        name,
        title,
        fr,
        base,
        ratio=fr["p99"] / base["p99"] if base["p99"] else float("nan"),
        target="p99 ≤ 50 ms",
        met=fr["p99"] <= 50.0,
        details={
            "ratio_of": "p99",
            "frames_per_subscriber": median(ours.frames) if ours.frames else 0,
            "frame_bytes_median": median(ours.sizes) if ours.sizes else 0,
            **details,
        },
    )


def live(bench: Bench, cfg: Config) -> list[dict[str, Any]]:
    subscribers = cfg.sizes.live_subscribers
    short = bench.create_flow("live3", flows.linear("bench-live-3", 3))
    long = bench.create_flow("live10", flows.linear("bench-live-10", 10))
    many = asyncio.run(_shape(bench, short, cfg, subscribers))
    one = asyncio.run(_shape(bench, long, cfg, 1))
    common = {
        "flowrunner_measures": "receipt time (driver, time.time()) minus the frame's `timestamp` (set by the "
        "worker when the event row is written, just before commit); only live frames after the snapshot",
        "baseline_measures": "the same subscriber count on raw Redis pub/sub (redis.asyncio, one connection "
        "each), frames published by a bench.publish task on the same worker at the observed frame rate",
    }
    return [
        _result(
            "d_live_many",
            f"{subscribers} WebSockets, one per execution (3-node flows)",
            *many,
            {"executions": subscribers, **common},
        ),
        _result(
            "d_live_one",
            f"{subscribers} WebSockets on one execution (10-node flow)",
            *one,
            {"executions": 1, **common},
        ),
    ]
