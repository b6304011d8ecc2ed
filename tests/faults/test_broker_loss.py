"""Broker loss: kill -9 the Redis server mid-run and start it empty; the reaper finishes every execution."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults.steps import (
    BATCH_FLOW,
    BATCH_MS,
    BATCH_RUNS,
    LINEAR_FLOW,
    LINEAR_RUNS,
    LINEAR_STEPS,
    NODE_MS,
    batch_input,
    check_batch_result,
    env_float,
    log_mark,
    logs_since,
    open_node_runs,
    reaper_actions,
    recovery_bound,
    wait_all,
    wait_until,
)
from tests.integration.api_steps import create_flow, start_run, wait_for
from tests.integration.ws_watch import Watch, watch_until_complete

pytestmark = pytest.mark.faults

REDIS_DOWN = env_float("FLOWRUNNER_FAULTS_REDIS_DOWN", 2.0)  # seconds between the kill and the restart


def _parts(ids: list[str], status: str) -> dict[str, int]:
    from django.db.models import Count

    from executions.models import NodeRun

    rows = NodeRun.objects.filter(execution_id__in=ids, batch_index__isnull=False, status=status)
    return {str(e): n for e, n in rows.values_list("execution_id").annotate(n=Count("id"))}


def _mid_batch(batch_ids: list[str]) -> bool:
    """Every batch execution has finished batches and at least 4 still queued: with 2 lanes each and 2 worker
    processes, some lane's next message is sitting in Redis (so its chord cannot survive the restart)."""
    done, queued = _parts(batch_ids, "succeeded"), _parts(batch_ids, "queued")
    return all(done.get(pk, 0) >= 1 and queued.get(pk, 0) >= 4 for pk in batch_ids)


def test_redis_restarted_empty_mid_run_every_execution_completes(stack, live_api, live_db, live_user):
    # Given batch and linear executions in flight
    batch_flow = create_flow(live_api, BATCH_FLOW)
    linear_flow = create_flow(live_api, LINEAR_FLOW)
    inputs = {start_run(live_api, batch_flow, batch_input(k)): batch_input(k) for k in range(BATCH_RUNS)}
    linear_ids = [start_run(live_api, linear_flow, {"busy_ms": NODE_MS}) for _ in range(LINEAR_RUNS)]
    ids = [*inputs, *linear_ids]
    wait_until(lambda: _mid_batch(list(inputs)), 60, "batch nodes half way")
    pids = stack.core()
    # When Redis dies (queues, unacked messages, chord counters: all gone) and comes back empty
    mark = log_mark(stack)
    stack.redis.kill()
    killed_at = time.monotonic()
    left = open_node_runs(ids)
    time.sleep(REDIS_DOWN)
    stack.redis.start()
    restarted = log_mark(stack)
    # Then every execution completes, driven from PostgreSQL by the reaper
    work = (
        sum(1 for run in left if run[2] is not None) * BATCH_MS
        + sum(1 for run in left if run[1] in LINEAR_STEPS) * NODE_MS
    ) / 1000
    bound = REDIS_DOWN + recovery_bound(work)
    final = wait_all(ids, timeout=bound + 30)
    recovery = time.monotonic() - killed_at
    actions = reaper_actions(stack, mark)
    print(
        f"\n[broker loss] {len(ids)} executions, {len(left)} node runs open when Redis was killed; Redis down "
        f"{REDIS_DOWN:g}s; all terminal {recovery:.1f}s after the kill (bound {bound:.1f}s); reaper {dict(actions)}"
    )
    assert set(final.values()) == {"completed"}, final
    assert recovery < bound, f"recovery took {recovery:.1f}s, over the bound of {bound:.1f}s"
    for execution_id, given in inputs.items():
        check_batch_result(wait_for(live_api, execution_id), given["numbers"])
    for execution_id in linear_ids:
        assert wait_for(live_api, execution_id)["results"]["trail"] == list(LINEAR_STEPS)
    # And it was the reaper: lost messages re-sent, lost chords joined from PostgreSQL
    assert actions["resent"] >= 1 and actions["joined"] >= 1, actions
    # And every process reconnected on its own (same pids): workers answer pings, beat's reaper ticks arrive,
    # the web process reaches the broker, and a new run is published, run and streamed over the WebSocket
    assert stack.core() == pids  # all still alive, none restarted
    stack.wait_for_workers(["w1"], timeout=30)
    wait_until(
        lambda: "flowrunner.reap[" in logs_since(stack, restarted), 30, "a reaper tick after the restart"
    )
    health = wait_until(lambda: _healthy(stack), 30, "health with broker ok")
    assert health["broker"] == "ok" and health["workers"] >= 1, health
    fresh = start_run(live_api, linear_flow, {"busy_ms": NODE_MS})
    watch = asyncio.run(watch_until_complete(stack.ws_url, live_user.headers, Watch(fresh), timeout=60))
    assert watch.statuses[-1]["status"] == "completed"
    seqs = watch.seqs()  # replayed events, then the snapshot (the last seq again), then live frames
    assert seqs == sorted(seqs) and sorted(set(seqs)) == list(range(1, seqs[-1] + 1)), seqs


def _healthy(stack) -> dict | None:  # noqa: ANN001
    try:
        body = stack.health().json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if body.get("broker") == "ok" and body.get("workers", 0) >= 1 else None
