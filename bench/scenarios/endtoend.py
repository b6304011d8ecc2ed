"""Scenarios a (10-node latency vs a chain) and b (parallel_batch fan-out vs a chord): one run at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from statistics import median
from typing import Any

from celery import chain, chord

from bench import flows
from bench.baseline_tasks import batch, durable_batch, durable_join, durable_step, join, step
from bench.config import Sizes
from bench.driver import Bench, CompletionWatcher, execution_times, start_run
from bench.stats import interleaved, scenario_result, summary

CHAIN_LENGTH = 10
TIMEOUT = 120.0


def _chain_run(length: int, task: Any = step) -> float:
    signature = chain(task.s({}, 1), *(task.s(i) for i in range(2, length + 1)))
    started = time.perf_counter()
    result = signature.apply_async().get(timeout=TIMEOUT)
    elapsed = time.perf_counter() - started
    if result.get(f"n{length}") != length:
        raise RuntimeError(f"chain returned {result!r}")
    return elapsed * 1000


def _chord_run(items: list[int], size: int, part: Any = batch, callback: Any = join) -> float:
    header = [part.s(items[i : i + size]) for i in range(0, len(items), size)]
    started = time.perf_counter()
    result = chord(header)(callback.s()).get(timeout=TIMEOUT)
    elapsed = time.perf_counter() - started
    if result["total"] != sum(items):
        raise RuntimeError(f"chord returned {result!r}")
    return elapsed * 1000


async def _ab_runs(
    bench: Bench,
    flow_id: str,
    input: dict[str, Any],
    baseline: Callable[[], float],
    runs: int,
    warmup: int,
    durable: Callable[[], float],
) -> tuple[list[float], list[float], dict[str, Any], list[float]]:
    """FlowRunner run, then baseline run, then the durable baseline, `warmup + runs` times; the warm-up
    rounds are dropped.

    Also splits FlowRunner's time (medians, ms): the run request until its 201, the execution's own life
    (created_at → finished_at, in PostgreSQL) and finished_at → receipt of `complete`."""
    ours: list[float] = []
    theirs: list[float] = []
    durables: list[float] = []
    marks: list[tuple[str, float, float, float]] = []
    async with bench.http() as http, CompletionWatcher(bench) as watcher:
        for _, measured in interleaved(runs, warmup):
            wall, started = time.time(), time.perf_counter()
            execution_id = await start_run(http, flow_id, input)
            answered = time.time()
            ended, received = await watcher.wait(execution_id, TIMEOUT)
            raw = await asyncio.to_thread(baseline)
            durable_raw = await asyncio.to_thread(durable)
            if measured:
                ours.append((ended - started) * 1000)
                theirs.append(raw)
                durables.append(durable_raw)
                marks.append((execution_id, wall, answered, received))
    times = await asyncio.to_thread(execution_times, [m[0] for m in marks])
    split = {
        "run_request_ms": [(answered - wall) * 1000 for _, wall, answered, _ in marks],
        "request_to_created_ms": [(times[i][0] - wall) * 1000 for i, wall, _, _ in marks],
        "created_to_finished_ms": [(times[i][1] - times[i][0]) * 1000 for i, _, _, _ in marks],
        "finished_to_complete_frame_ms": [(received - times[i][1]) * 1000 for i, _, _, received in marks],
    }
    medians = {name: round(median(values), 2) for name, values in split.items() if values}
    return ours, theirs, medians, durables


def latency(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    flow_id = bench.create_flow("linear10", flows.linear("bench-linear-10", CHAIN_LENGTH))
    ours, theirs, split, durables = asyncio.run(
        _ab_runs(
            bench,
            flow_id,
            {},
            lambda: _chain_run(CHAIN_LENGTH),
            sizes.latency_runs,
            sizes.latency_warmup,
            lambda: _chain_run(CHAIN_LENGTH, durable_step),
        )
    )
    fr, base, durable = summary(ours, "ms"), summary(theirs, "ms"), summary(durables, "ms")
    ratio = fr["median"] / base["median"]
    durable_ratio = fr["median"] / durable["median"]
    return scenario_result(
        "a_latency",
        "10-node linear flow vs chain of 10 (and a chain of 10 durable tasks)",
        fr,
        base,
        target="≤1.25× durable chain and ≤2× plain chain (medians)",
        met=durable_ratio <= 1.25 and ratio <= 2,
        details={
            "durable_baseline": durable,
            "durable_ratio": durable_ratio,
            "durable_baseline_measures": "chain(10 × bench.durable_step): each task also INSERTs one row "
            "and commits (autocommit) in PostgreSQL",
            "flowrunner_measures": "POST /flows/{id}/run (HTTP, daphne) → `complete` frame on a WebSocket "
            "subscribed to the account (subscribe_account, opened beforehand)",
            "baseline_measures": "chain(10 × bench.step).apply_async() → result.get() (Redis result backend)",
            "flowrunner_split_median_ms": split,
            "per_node_ms": fr["median"] / CHAIN_LENGTH,
            "per_task_ms": base["median"] / CHAIN_LENGTH,
            "warmup_pairs_discarded": sizes.latency_warmup,
        },
    )


def fanout(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    size = sizes.fanout_batch_size
    items = list(range(sizes.fanout_items))
    batches = -(-len(items) // size)
    flow_id = bench.create_flow("fanout", flows.fanout("bench-fanout", size))
    ours, theirs, split, durables = asyncio.run(
        _ab_runs(
            bench,
            flow_id,
            {"items": items},
            lambda: _chord_run(items, size),
            sizes.fanout_runs,
            sizes.fanout_warmup,
            lambda: _chord_run(items, size, durable_batch, durable_join),
        )
    )
    fr, base, durable = summary(ours, "ms"), summary(theirs, "ms"), summary(durables, "ms")
    durable_ratio = fr["median"] / durable["median"]
    return scenario_result(
        "b_fanout",
        f"parallel_batch {len(items)} items / {size} per batch vs chord of {batches} + callback (and durable)",
        fr,
        base,
        target="≤1.25× durable chord (median)",
        met=durable_ratio <= 1.25,
        details={
            "durable_baseline": durable,
            "durable_ratio": durable_ratio,
            "durable_baseline_measures": f"chord({batches} × bench.durable_batch)(bench.durable_join): each "
            "task also INSERTs one row and commits in PostgreSQL",
            "flowrunner_measures": "POST run → `complete` frame (one parallel_batch node: start task, "
            f"{batches} batch tasks in a chord, join task)",
            "baseline_measures": f"chord({batches} × bench.batch)(bench.join).get()",
            "flowrunner_split_median_ms": split,
            "warmup_pairs_discarded": sizes.fanout_warmup,
        },
    )
