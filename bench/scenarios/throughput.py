"""Scenario c: a backlog of 3-node executions drained by the workers vs a group of trivial tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from celery import group

from bench import cpu, flows, profiling
from bench.baseline_tasks import durable_step, step
from bench.config import Config
from bench.driver import Bench, start_many, wait_executions
from bench.scenarios import querycounts
from bench.stats import scenario_result, summary

NODES = 3
WARMUP_EXECUTIONS = 100
TIMEOUT = 600.0


def _finished_window(ids: list[str]) -> tuple[float, float, int]:
    """(first node run started_at, last execution finished_at, node runs) of the executions, UNIX times."""
    from django.db.models import Max, Min

    from executions.models import Execution, NodeRun

    last = Execution.objects.filter(id__in=ids).aggregate(last=Max("finished_at"))["last"]
    runs = NodeRun.objects.filter(execution_id__in=ids)
    first = runs.aggregate(first=Min("started_at"))["first"]
    return first.timestamp(), last.timestamp(), runs.count()


async def _flowrunner_round(
    bench: Bench, flow_id: str, count: int, profile_to: Path | None = None, wall_clock: bool = True
) -> dict[str, Any]:
    stack = bench.stack
    await asyncio.to_thread(stack.pause)
    submit_started = time.perf_counter()
    async with bench.http() as http:
        ids = await start_many(http, flow_id, count)
    submitted = time.perf_counter() - submit_started
    spy = None
    if profile_to is not None:
        main_pid, _ = stack.worker_pids()
        spy = profiling.start(main_pid, profile_to, wall_clock=wall_clock)
        await asyncio.sleep(1.0)  # py-spy attaches to every process of the worker
    window = cpu.CpuWindow(cpu.stack_groups(stack, _database()))
    activity = profiling.ActivitySampler() if spy is not None else contextlib.nullcontext()
    started = time.time()
    with window, activity:
        await asyncio.to_thread(stack.resume)
        await wait_executions(ids, TIMEOUT)
    spy_log = profiling.stop(spy) if spy is not None else ""
    first, last, runs = await asyncio.to_thread(_finished_window, ids)
    if first < started:  # the consumer was not paused: the backlog did not wait for the clock
        raise RuntimeError(f"a node run started {started - first:.3f}s before the worker was resumed")
    elapsed = last - started
    return {
        "cpu_ms_per_node_run": {k: round(v * 1000 / runs, 2) for k, v in window.seconds().items()},
        "rate": runs / elapsed,
        "elapsed_s": elapsed,
        "node_runs": runs,
        "submit_s": submitted,
        "first_start_after_resume_s": first - started,
        "py_spy": spy_log,
        "pg_activity": activity.summary() if spy is not None else None,
    }


def _baseline_round(bench: Bench, tasks: int, task: Any = step) -> dict[str, Any]:
    stack = bench.stack
    stack.pause()
    result = group(task.s({}, i) for i in range(tasks)).apply_async()
    window = cpu.CpuWindow(cpu.stack_groups(stack, _database()))
    started = time.time()
    with window:
        stack.resume()
        values = result.get(timeout=TIMEOUT)
    last = max(v["t"] for v in values)
    result.forget()
    return {
        "cpu_ms_per_task": {k: round(v * 1000 / tasks, 2) for k, v in window.seconds().items()},
        "rate": tasks / (last - started),
        "elapsed_s": last - started,
        "tasks": tasks,
    }


def _database() -> str:
    from django.conf import settings

    return settings.DATABASES["default"]["NAME"]


async def _rounds(
    bench: Bench, cfg: Config, flow_id: str
) -> tuple[list[dict], list[dict], dict | None, list[dict]]:
    sizes = cfg.sizes
    ours, theirs, durables = [], [], []
    for index in range(sizes.throughput_warmup + sizes.throughput_rounds):
        measured = index >= sizes.throughput_warmup
        count = (
            sizes.throughput_executions if measured else min(WARMUP_EXECUTIONS, sizes.throughput_executions)
        )
        a = await _flowrunner_round(bench, flow_id, count)
        b = await asyncio.to_thread(_baseline_round, bench, count * NODES)
        c = await asyncio.to_thread(_baseline_round, bench, count * NODES, durable_step)
        if measured:
            ours.append(a)
            theirs.append(b)
            durables.append(c)
    profile = None
    if cfg.profile and profiling.available():
        profile = {}
        # Extra, unmeasured rounds (sampling costs CPU on the same cores): wall clock, then CPU only.
        for kind, wall_clock in (("wall_clock", True), ("cpu", False)):
            path = cfg.results_dir / f"{cfg.stamp}-profile-throughput-{kind}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            round_ = await _flowrunner_round(
                bench, flow_id, sizes.throughput_executions, profile_to=path, wall_clock=wall_clock
            )
            result = {
                "raw_file": str(path),
                "py_spy": round_["py_spy"][-400:],
                "rate_while_sampled": round_["rate"],
                "cpu_ms_per_node_run_while_sampled": round_["cpu_ms_per_node_run"],
                "pg_activity": round_["pg_activity"],
            }
            if path.exists():
                result.update(profiling.analyse(path, bench.stack.worker_pids()[0]))
            profile[kind] = result
    return ours, theirs, profile, durables


def throughput(bench: Bench, cfg: Config) -> dict[str, Any]:
    sizes = cfg.sizes
    flow_id = bench.create_flow("linear3", flows.linear("bench-linear-3", NODES))
    ours, theirs, profile, durables = asyncio.run(_rounds(bench, cfg, flow_id))
    fr = summary([r["rate"] for r in ours], "node runs/s")
    base = summary([r["rate"] for r in theirs], "tasks/s")
    durable = summary([r["rate"] for r in durables], "tasks/s")
    counts = querycounts.measure(bench, cfg)
    ratio = fr["median"] / base["median"]
    durable_ratio = fr["median"] / durable["median"]
    queries = counts["per_node_run"]["queries"]
    return scenario_result(
        "c_throughput",
        f"{sizes.throughput_executions} × 3-node flow vs group of {sizes.throughput_executions * NODES}",
        fr,
        base,
        ratio=ratio,
        target="≥0.6× a group of durable tasks' rate and ≤3 statements per node run",
        met=durable_ratio >= 0.6 and queries <= 3,
        details={
            "durable_baseline": durable,
            "durable_ratio": durable_ratio,
            "measures": "the backlog is queued with the worker's consumer paused (cancel_consumer); the "
            "clock starts at add_consumer and stops at the last execution's finished_at / last task's end",
            "queries_per_node_run": queries,
            "transactions_per_node_run": counts["per_node_run"]["transactions"],
            "round_trips_per_node_run": counts["per_node_run"]["postgres_round_trips"],
            "query_counts": counts,
            "rounds": {"flowrunner": ours, "baseline": theirs, "durable_baseline": durables},
            "profile": profile,
        },
    )
