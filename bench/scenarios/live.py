"""Scenario d: commit-to-receipt latency of live frames to many WebSocket subscribers vs raw Redis pub/sub."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from statistics import median
from traceback import format_exc
from typing import Any

from websockets.exceptions import InvalidHandshake

from bench import flows, profiling
from bench.config import Config
from bench.driver import Bench, wait_executions
from bench.scenarios.live_baseline import CONNECT_PARALLEL, TIMEOUT, baseline_round
from bench.scenarios.live_load import (
    CHATTY_FLOW,
    DENSE_PER_EXECUTION,
    IDLE_PER_SUBSCRIBER,
    idle_sockets,
    stalled_readers,
    start_all,
)
from bench.scenarios.live_receipts import Receipts, Subscriber, quiet_collector
from bench.stamped import StampedWebSocket, Unstamped
from bench.stats import scenario_result, summary

CONNECT_ATTEMPTS = 3
GRACE = 15.0


async def _connect(bench: Bench, out: Receipts) -> StampedWebSocket:
    """A WebSocket, the handshake tried again (as a client would) when daphne dropped it: on a loaded machine
    a handshake can pass daphne's 5 s limit. Each retry is counted and reported."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return await StampedWebSocket.connect(bench.stack.ws_url, bench.creds.headers)
        except (InvalidHandshake, OSError, TimeoutError):
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            out.handshakes_retried += 1
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def _subscribe(
    bench: Bench, sub: Subscriber, ready: asyncio.Event, out: Receipts, hold: asyncio.Event | None = None
) -> None:
    try:
        async with await _connect(bench, out) as ws:
            await ws.send(json.dumps({"type": "subscribe", "execution_id": sub.execution_id}))
            snapshot = json.loads((await ws.recv())[0])
            if snapshot["type"] != "status":
                raise RuntimeError(f"subscribe answered {snapshot}")
            sub.snapshot_seq = sub.last_seq = snapshot["seq"]
            completed = asyncio.get_running_loop().create_future()

            def on_frame(raw: str, arrival: float) -> None:
                sub.received.append((raw, arrival, time.time()))
                if '"complete"' in raw and json.loads(raw)["type"] == "complete":
                    sub.complete = True
                    completed.done() or completed.set_result(None)

            def on_error(error: BaseException) -> None:
                if not completed.done():
                    completed.set_exception(error)

            ws.handle(on_frame, on_error)
            ready.set()
            await completed
            if hold is not None:  # stay connected, as the baseline's connections do, until the round ends
                await hold.wait()
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
    unstamped = Unstamped.reads
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
        quiet_collector()
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
        sub.tally(out)
        out.frames.append(sub.frames)
        out.spans.append(sub.last - sub.first)
        if not sub.complete:
            missed = await asyncio.to_thread(_missed, sub, finals[sub.execution_id])
            missed["channel_layer_keys"] = await asyncio.to_thread(_layer_backlog)
            out.lost.append(missed)
    out.subscribers = len(subs)
    out.unstamped = Unstamped.reads - unstamped
    return out


async def _shape(
    bench: Bench, flow_id: str, cfg: Config, executions: int, subscribers: int | None = None
) -> tuple[Receipts, Receipts]:
    sizes = cfg.sizes
    subscribers = subscribers or sizes.live_subscribers
    ours, theirs = Receipts(), Receipts()
    for index in range(sizes.live_warmup + sizes.live_rounds):
        a = await _flowrunner_round(bench, flow_id, executions, subscribers)
        b = await baseline_round(executions, subscribers, a.shape())
        if index >= sizes.live_warmup:
            ours.add(a)
            theirs.add(b)
    return ours, theirs


def _result(
    name: str, title: str, ours: Receipts, theirs: Receipts, details: dict[str, Any], limit: float = 50.0
) -> dict[str, Any]:
    fr, base = summary(ours.latencies, "ms"), summary(theirs.latencies, "ms")
    read = {
        "flowrunner": summary(ours.read_latencies, "ms"),
        "baseline": summary(theirs.read_latencies, "ms"),
    }
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
            "to_driver_read": read,
            # reads the kernel gave no arrival time for, timed when read instead
            "unstamped_reads": {"flowrunner": ours.unstamped, "baseline": theirs.unstamped},
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
        "flowrunner_measures": "arrival at the client's socket (the kernel's receive time of the read that "
        "completed the frame, SO_TIMESTAMPNS) minus the frame's `timestamp` (set by the worker when the event "
        "row is written, just before commit); only live frames after the snapshot. `to_driver_read`: the same "
        "to the driver's time.time() once it has parsed the frame",
        "baseline_measures": "the same subscriber count on raw Redis pub/sub (one connection each, timed the "
        "same way), frames published by a bench.publish task on the same worker at the observed frame rate",
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
