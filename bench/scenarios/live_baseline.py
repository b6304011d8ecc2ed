"""Scenario d's raw baseline: the same subscribers and frames over plain Redis pub/sub, timed the same way."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import uuid

from celery import group

from bench.baseline_tasks import publish
from bench.scenarios.live_receipts import Receipts, quiet_collector, sent_at
from bench.stamped import Unstamped
from bench.stamped_pubsub import StampedPubSub

CONNECT_PARALLEL = 50
TIMEOUT = 300.0


async def baseline_round(channels: int, subscribers: int, shape: tuple[int, float, int]) -> Receipts:
    """`subscribers` connections over `channels` channels; a bench.publish task per channel on the same worker
    sends `shape`'s frames (count, gap, filler). Frames are decoded once every reader has its last one, as
    FlowRunner's side decodes after its round."""
    from django.conf import settings

    count, gap, filler = shape
    out = Receipts()
    unstamped = Unstamped.reads
    prefix = f"bench:live:{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}:{i}" for i in range(channels)]
    gate = asyncio.Semaphore(CONNECT_PARALLEL)

    async def subscribed(name: str) -> StampedPubSub:
        async with gate:
            return await StampedPubSub.subscribe(settings.REDIS_URL, name)

    opened = await asyncio.gather(
        *(subscribed(names[i % channels]) for i in range(subscribers)), return_exceptions=True
    )
    pubsubs = [p for p in opened if isinstance(p, StampedPubSub)]
    failed = [p for p in opened if not isinstance(p, StampedPubSub)]
    if failed:
        for pubsub in pubsubs:
            pubsub.close()
        raise failed[0]

    async def receive(pubsub: StampedPubSub) -> list[tuple[bytes, float, float]]:
        received: list[tuple[bytes, float, float]] = []
        done = asyncio.get_running_loop().create_future()

        def on_message(data: bytes, arrival: float) -> None:
            received.append((data, arrival, time.time()))
            if len(received) >= count and not done.done():  # seqs 1…count, over one connection each
                done.set_result(None)

        def on_error(error: BaseException) -> None:
            if not done.done():
                done.set_exception(error)

        pubsub.handle(on_message, on_error)
        await done
        return received

    readers = [asyncio.create_task(receive(p)) for p in pubsubs]
    quiet_collector()
    try:
        await asyncio.to_thread(lambda: group(publish.s(n, count, gap, filler) for n in names).apply_async())
        results = await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT)
    finally:
        gc.unfreeze()
        for reader in readers:
            reader.cancel()
        for pubsub in pubsubs:
            pubsub.close()
    for received in results:
        for data, arrival, now in received:
            sent = sent_at(json.loads(data))
            out.latencies.append((arrival - sent) * 1000)
            out.read_latencies.append((now - sent) * 1000)
            out.sizes.append(len(data))
        out.frames.append(len(received))
        out.spans.append(received[-1][2] - received[0][2])
    out.unstamped = Unstamped.reads - unstamped
    return out
