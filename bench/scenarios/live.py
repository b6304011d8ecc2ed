"""Scenario d: commit-to-receipt latency of live frames to many WebSocket subscribers vs raw Redis pub/sub."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from traceback import format_exc
from typing import Any

from celery import group
from websockets.exceptions import InvalidHandshake

from bench import flows, profiling
from bench.baseline_tasks import publish
from bench.config import Config
from bench.driver import Bench, wait_executions
from bench.scenarios.live_load import (
    CHATTY_FLOW,
    DENSE_PER_EXECUTION,
    IDLE_PER_SUBSCRIBER,
    idle_sockets,
    stalled_readers,
    start_all,
)
from bench.stats import scenario_result, summary

LIVE_TYPES = ("status", "node", "log")
CONNECT_PARALLEL = 50
CONNECT_ATTEMPTS = 3
TIMEOUT = 300.0
GRACE = 15.0


def _sent_at(frame: dict[str, Any]) -> float:
    return datetime.fromisoformat(frame["timestamp"]).timestamp()


class Receipts:
    """Latencies (ms) of every live frame, frames per subscriber, frame sizes, each subscriber's span, and
    (FlowRunner) the subscribers still without `complete` once their execution had ended."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.frames: list[int] = []
        self.sizes: list[int] = []
        self.spans: list[float] = []
        self.lost: list[dict[str, Any]] = []
        self.subscribers = 0
        self.handshakes_retried = 0

    def shape(self) -> tuple[int, float, int]:
        """(frames per subscriber, seconds between frames, payload filler) for the baseline to mimic."""
        count = max(1, round(median(self.frames))) if self.frames else 1
        gap = min(0.005, median(self.spans) / count) if self.spans else 0.0
        filler = max(0, round(median(self.sizes)) - 120) if self.sizes else 0
        return count, gap, filler

    def add(self, other: Receipts) -> None:
        self.latencies += other.latencies
        self.frames += other.frames
        self.sizes += other.sizes
        self.spans += other.spans
        self.lost += other.lost
        self.subscribers += other.subscribers
        self.handshakes_retried += other.handshakes_retried


@dataclass
class Subscriber:
    execution_id: str
    snapshot_seq: int = 0
    last_seq: int = 0
    frames: int = 0
    first: float = 0.0
    last: float = 0.0
    complete: bool = False
    tail: list[tuple[int, str]] = field(default_factory=list)


async def _connect(bench: Bench, out: Receipts) -> Any:
    """A WebSocket, the handshake tried again (as a client would) when daphne dropped it: on a loaded machine
    a handshake can pass daphne's 5 s limit. Each retry is counted and reported."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return await bench.ws()
        except (InvalidHandshake, OSError, TimeoutError):
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            out.handshakes_retried += 1
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


def _quiet_collector() -> None:
    """Before a measured window: the driver's objects so far (its sockets, their buffers) leave the collector's
    generations, so that a full collection scanning thousands of sockets' objects (measured up to 270 ms in the
    driver) is not counted as frame latency on either side. `gc.unfreeze()` after the window."""
    gc.collect()
    gc.freeze()


async def _subscribe(
    bench: Bench, sub: Subscriber, ready: asyncio.Event, out: Receipts, hold: asyncio.Event | None = None
) -> None:
    try:
        async with await _connect(bench, out) as ws:
            await ws.send(json.dumps({"type": "subscribe", "execution_id": sub.execution_id}))
            snapshot = json.loads(await ws.recv())
            if snapshot["type"] != "status":
                raise RuntimeError(f"subscribe answered {snapshot}")
            sub.snapshot_seq = sub.last_seq = snapshot["seq"]
            ready.set()
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                if frame["type"] == "complete":
                    sub.complete = True
                    if (
                        hold is not None
                    ):  # stay connected, as the baseline's connections do, until the round ends
                        await hold.wait()
                    break
                if frame["type"] in LIVE_TYPES and frame["seq"] > sub.snapshot_seq:
                    out.latencies.append((now - _sent_at(frame)) * 1000)
                    out.sizes.append(len(raw))
                    sub.frames += 1
                    sub.last_seq = max(sub.last_seq, frame["seq"])
                    sub.tail = [*sub.tail[-4:], (frame["seq"], frame["type"])]
                    sub.first = sub.first or now
                    sub.last = now
    finally:
        ready.set()  # a subscriber that failed must not keep the round waiting; its task re-raises


def _last_seqs(ids: list[str]) -> dict[str, int]:
    from executions.models import Execution

    return {str(i): s for i, s in Execution.objects.filter(id__in=ids).values_list("id", "last_event_seq")}


def _layer_backlog() -> dict[str, int]:
    """Messages waiting in the channel layer's Redis keys of process-specific channels (daphne's)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return {key.decode(): client.zcard(key) for key in client.scan_iter("asgispecific*", count=1000)}
    finally:
        client.close()


def _missed(sub: Subscriber, last_seq: int) -> dict[str, Any]:
    """What a subscriber left without `complete` saw last, and the stored events it never received."""
    from executions.models import ExecutionEvent

    rows = ExecutionEvent.objects.filter(execution_id=sub.execution_id, seq__gt=sub.last_seq).order_by("seq")
    return {
        "execution_id": sub.execution_id,
        "last_seq": last_seq,
        "last_frames_seen": sub.tail,
        "never_received": [
            {"seq": e.seq, "type": e.type, "created_at": e.created_at.isoformat(), "node_id": e.node_id}
            for e in rows
        ],
    }


async def _flowrunner_round(
    bench: Bench, flow_id: str, executions: int, subscribers: int, hooks: Any = None
) -> Receipts:
    """Runs queued with the consumer paused; every subscriber has its snapshot before the worker resumes.
    Once PostgreSQL says every execution ended, subscribers get GRACE seconds to see `complete`."""
    out = Receipts()
    await asyncio.to_thread(bench.stack.pause)
    async with bench.http() as http:
        ids = await start_all(http, flow_id, executions)
    subs = [Subscriber(ids[i % len(ids)]) for i in range(subscribers)]
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    readies = [asyncio.Event() for _ in subs]
    hold = asyncio.Event()

    async def opened(sub: Subscriber, ready: asyncio.Event) -> None:
        async with gate:
            task = asyncio.create_task(_subscribe(bench, sub, ready, out, hold))
            await asyncio.wait([task, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        await task

    tasks = [asyncio.create_task(opened(s, r)) for s, r in zip(subs, readies, strict=True)]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), TIMEOUT)
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        if failed:
            raise failed[0].exception()
        if hooks is not None:
            await asyncio.to_thread(hooks.before_resume)
        _quiet_collector()
    finally:
        await asyncio.to_thread(bench.stack.resume)
    try:
        await wait_executions(ids, TIMEOUT)
        # Every subscriber stays connected until all have `complete` (or the grace ends): closing sockets while
        # others still receive would be counted as their latency, and the baseline closes nothing meanwhile.
        deadline = time.monotonic() + GRACE
        while not all(sub.complete for sub in subs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        gc.unfreeze()
        hold.set()
    _, pending = await asyncio.wait(tasks, timeout=GRACE)
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if hooks is not None:
        await asyncio.to_thread(hooks.after_done)
    for result in results:
        if isinstance(result, Exception):
            raise result
    finals = await asyncio.to_thread(_last_seqs, ids)
    for sub in subs:
        out.frames.append(sub.frames)
        out.spans.append(sub.last - sub.first)
        if not sub.complete:
            missed = await asyncio.to_thread(_missed, sub, finals[sub.execution_id])
            missed["channel_layer_keys"] = await asyncio.to_thread(_layer_backlog)
            out.lost.append(missed)
    out.subscribers = len(subs)
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
    _quiet_collector()
    await asyncio.to_thread(lambda: group(publish.s(n, count, gap, filler) for n in names).apply_async())
    try:
        await asyncio.gather(*readers)
    finally:
        gc.unfreeze()
        for pubsub, client in zip(pubsubs, clients, strict=True):
            await pubsub.aclose()
            await client.aclose()
    return out


async def _shape(
    bench: Bench, flow_id: str, cfg: Config, executions: int, subscribers: int | None = None
) -> tuple[Receipts, Receipts]:
    sizes = cfg.sizes
    subscribers = subscribers or sizes.live_subscribers
    ours, theirs = Receipts(), Receipts()
    for index in range(sizes.live_warmup + sizes.live_rounds):
        a = await _flowrunner_round(bench, flow_id, executions, subscribers)
        b = await _baseline_round(bench, executions, subscribers, a.shape())
        if index >= sizes.live_warmup:
            ours.add(a)
            theirs.add(b)
    return ours, theirs


def _result(
    name: str, title: str, ours: Receipts, theirs: Receipts, details: dict[str, Any], limit: float = 50.0
) -> dict[str, Any]:
    fr, base = summary(ours.latencies, "ms"), summary(theirs.latencies, "ms")
    return scenario_result(
        name,
        title,
        fr,
        base,
        ratio=fr["p99"] / base["p99"] if base["p99"] else float("nan"),
        target=f"p99 ≤ {limit:g} ms (and every subscriber gets `complete`)",
        met=fr["p99"] <= limit and not ours.lost,
        details={
            "ratio_of": "p99",
            "subscribers": ours.subscribers,
            "subscribers_without_complete": len(ours.lost),
            "handshakes_retried": ours.handshakes_retried,
            "without_complete": ours.lost[:20],
            "frames_per_subscriber": median(ours.frames) if ours.frames else 0,
            "frame_bytes_median": median(ours.sizes) if ours.sizes else 0,
            **details,
        },
    )


def _profile_web(bench: Bench, cfg: Config, flow_id: str) -> dict[str, Any]:
    """An extra, unmeasured round of the one-execution shape with daphne sampled by py-spy (CPU only)."""
    path = cfg.results_dir / f"{cfg.stamp}-profile-daphne-live-one.txt"
    path.parent.mkdir(parents=True, exist_ok=True)

    # The driver too: its one process reads every subscriber's frames, and a receipt it is late to read
    # counts as latency just as a late write does.
    driver_path = cfg.results_dir / f"{cfg.stamp}-profile-driver-live-one.txt"

    class Hooks:
        """py-spy runs from the moment every subscriber has its snapshot until the last `complete`."""

        spies: list[Any] = []
        log = ""

        def before_resume(self) -> None:
            self.spies = [
                profiling.start(bench.stack.children["web"].pid, path, wall_clock=False),
                profiling.start(os.getpid(), driver_path, wall_clock=False, children=False),
            ]
            time.sleep(1.0)

        def after_done(self) -> None:
            spies, self.spies = self.spies, []
            self.log = "".join(profiling.stop(spy) for spy in spies)

    hooks = Hooks()
    try:
        asyncio.run(_flowrunner_round(bench, flow_id, 1, cfg.sizes.live_subscribers, hooks))
    finally:
        if hooks.spies:  # the round failed before its end
            hooks.after_done()
    result: dict[str, Any] = {"raw_file": str(path), "py_spy": hooks.log[-400:]}
    if path.exists():
        result.update(profiling.analyse_cpu(path))
    if driver_path.exists():
        result["driver"] = {"raw_file": str(driver_path), **profiling.analyse_cpu(driver_path)}
    return result


def live(bench: Bench, cfg: Config) -> list[dict[str, Any]]:
    subscribers = cfg.sizes.live_subscribers
    shapes = set(cfg.live_shapes)
    short = bench.create_flow("live3", flows.linear("bench-live-3", 3))
    long = bench.create_flow("live10", flows.linear("bench-live-10", 10))
    common = {
        "flowrunner_measures": "receipt time (driver, time.time()) minus the frame's `timestamp` (set by the "
        "worker when the event row is written, just before commit); only live frames after the snapshot",
        "baseline_measures": "the same subscriber count on raw Redis pub/sub (redis.asyncio, one connection "
        "each), frames published by a bench.publish task on the same worker at the observed frame rate",
    }

    def many() -> dict[str, Any]:
        ours_theirs = asyncio.run(_shape(bench, short, cfg, subscribers))
        title = f"{subscribers} WebSockets, one per execution (3-node flows)"
        return _result("d_live_many", title, *ours_theirs, {"executions": subscribers, **common})

    def one() -> dict[str, Any]:
        ours_theirs = asyncio.run(_shape(bench, long, cfg, 1))
        web_profile = _profile_web(bench, cfg, long) if cfg.profile and profiling.available() else None
        title = f"{subscribers} WebSockets on one execution (10-node flow)"
        details = {"executions": 1, "web_profile": web_profile, **common}
        return _result("d_live_one", title, *ours_theirs, details)

    def dense() -> dict[str, Any]:
        ours_theirs = asyncio.run(_shape(bench, short, cfg, subscribers, subscribers * DENSE_PER_EXECUTION))
        title = f"{subscribers * DENSE_PER_EXECUTION} WebSockets on {subscribers} executions (3-node flows)"
        details = {"executions": subscribers, **common}
        return _result("d_live_dense", title, *ours_theirs, details, limit=100.0)

    idle_profile = None
    if cfg.profile and profiling.available():
        idle_profile = cfg.results_dir / f"{cfg.stamp}-profile-daphne-live-idle-pings.txt"
    plan = {
        "many": many,
        "one": one,
        "dense": dense,
        "idle": lambda: asyncio.run(
            idle_sockets(bench, short, subscribers * IDLE_PER_SUBSCRIBER, idle_profile)
        ),
        "stalled": lambda: asyncio.run(stalled_readers(bench, bench.create_flow("chatty", CHATTY_FLOW))),
    }
    results = []
    for name, run in plan.items():
        if name not in shapes:
            continue
        # A shape that fails is reported on its own; the others still run.
        try:
            results.append(run())
        except Exception as exc:
            results.append(
                {
                    "scenario": f"d_live_{name}",
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": format_exc(),
                }
            )
    return results
