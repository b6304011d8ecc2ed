"""Scenario c: a backlog of 3-node executions drained by the workers vs a group of trivial tasks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from celery import group

from bench import flows, profiling
from bench.baseline_tasks import step
from bench.config import Config
from bench.driver import Bench, pg_counters, start_many, wait_executions
from bench.scenarios import querycounts
from bench.stats import scenario_result, summary

NODES = 3
STATS_SETTLE = 1.2  # PostgreSQL backends flush their statistics at most once a second, when idle
WARMUP_EXECUTIONS = 100
TIMEOUT = 600.0


def _finished_window(ids: list[str]) -> tuple[float, int]:
    """(last finished_at as a UNIX time, node runs) of the executions."""
    from django.db.models import Max

    from executions.models import Execution, NodeRun

    last = Execution.objects.filter(id__in=ids).aggregate(last=Max("finished_at"))["last"]
    runs = NodeRun.objects.filter(execution_id__in=ids).count()
    return last.timestamp(), runs


async def _flowrunner_round(
    bench: Bench, flow_id: str, count: int, profile_to: Path | None = None
) -> dict[str, Any]:
    stack = bench.stack
    await asyncio.to_thread(stack.pause)
    submit_started = time.perf_counter()
    async with bench.http() as http:
        ids = await start_many(http, flow_id, count)
    submitted = time.perf_counter() - submit_started
    await asyncio.sleep(STATS_SETTLE)
    before = await asyncio.to_thread(pg_counters)
    spy = None
    if profile_to is not None:
        main_pid, _ = stack.worker_pids()
        spy = profiling.start(main_pid, profile_to)
        await asyncio.sleep(1.0)  # py-spy attaches to every process of the worker
    started = time.time()
    await asyncio.to_thread(stack.resume)
    polls = await wait_executions(ids, TIMEOUT)
    spy_log = profiling.stop(spy) if spy is not None else ""
    last, runs = await asyncio.to_thread(_finished_window, ids)
    await asyncio.sleep(STATS_SETTLE)
    after = await asyncio.to_thread(pg_counters)
    delta = {key: after[key] - before[key] for key in after}
    # The driver's own statements in the window: each poll is one autocommit SELECT (a transaction), plus
    # the closing _finished_window (two) and pg_counters itself (one).
    delta["xact_commit"] -= polls + 3
    elapsed = last - started
    return {
        "rate": runs / elapsed,
        "elapsed_s": elapsed,
        "node_runs": runs,
        "submit_s": submitted,
        "pg": delta,
        "py_spy": spy_log,
    }


def _baseline_round(bench: Bench, tasks: int) -> dict[str, Any]:
    stack = bench.stack
    stack.pause()
    result = group(step.s({}, i) for i in range(tasks)).apply_async()
    started = time.time()
    stack.resume()
    values = result.get(timeout=TIMEOUT)
    last = max(v["t"] for v in values)
    result.forget()
    return {"rate": tasks / (last - started), "elapsed_s": last - started, "tasks": tasks}


async def _rounds(bench: Bench, cfg: Config, flow_id: str) -> tuple[list[dict], list[dict], dict | None]:
    sizes = cfg.sizes
    ours, theirs = [], []
    for index in range(sizes.throughput_warmup + sizes.throughput_rounds):
        measured = index >= sizes.throughput_warmup
        count = (
            sizes.throughput_executions if measured else min(WARMUP_EXECUTIONS, sizes.throughput_executions)
        )
        a = await _flowrunner_round(bench, flow_id, count)
        b = await asyncio.to_thread(_baseline_round, bench, count * NODES)
        if measured:
            ours.append(a)
            theirs.append(b)
    profile = None
    if cfg.profile and profiling.available():
        # An extra, unmeasured round: sampling costs CPU on the same cores.
        path = cfg.results_dir / f"{cfg.stamp}-profile-throughput.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        round_ = await _flowrunner_round(bench, flow_id, sizes.throughput_executions, profile_to=path)
        profile = {"raw_file": str(path), "py_spy": round_["py_spy"][-400:]}
        if path.exists():
            profile.update(profiling.analyse(path))
    return ours, theirs, profile


def throughput(bench: Bench, cfg: Config) -> dict[str, Any]:
    sizes = cfg.sizes
    flow_id = bench.create_flow("linear3", flows.linear("bench-linear-3", NODES))
    ours, theirs, profile = asyncio.run(_rounds(bench, cfg, flow_id))
    fr = summary([r["rate"] for r in ours], "node runs/s")
    base = summary([r["rate"] for r in theirs], "tasks/s")
    counts = querycounts.measure(bench, cfg)
    runs = sum(r["node_runs"] for r in ours)
    pg = {key: sum(r["pg"][key] for r in ours) for key in ours[0]["pg"]}
    ratio = fr["median"] / base["median"]
    queries = counts["per_node_run"]["queries"]
    return scenario_result(
        "c_throughput",
        f"{sizes.throughput_executions} × 3-node flow vs group of {sizes.throughput_executions * NODES}",
        fr,
        base,
        ratio=ratio,
        target="≥0.5× raw group's task rate and ≤4 queries per node run",
        met=ratio >= 0.5 and queries <= 4,
        details={
            "measures": "the backlog is queued with the worker's consumer paused (cancel_consumer); the clock "
            "starts at add_consumer and stops at the last execution's finished_at / the last task's end",
            "queries_per_node_run": queries,
            "transactions_per_node_run": counts["per_node_run"]["transactions"],
            "round_trips_per_node_run": counts["per_node_run"]["postgres_round_trips"],
            "query_counts": counts,
            "pg_stat_database_per_node_run": {k: round(v / runs, 2) for k, v in pg.items()},
            "rounds": {"flowrunner": ours, "baseline": theirs},
            "profile": profile,
        },
    )
