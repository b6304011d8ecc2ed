"""Worker death: SIGKILL a whole Celery worker mid-run; another finishes every execution, each batch item once."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.steps import (
    BATCH_FLOW,
    BATCH_MS,
    BATCH_RUNS,
    LINEAR_FLOW,
    LINEAR_RUNS,
    LINEAR_STEPS,
    NODE_MS,
    REAPER_INTERVAL,
    STALE_AFTER,
    batch_input,
    check_batch_result,
    log_mark,
    max_batch_overlap,
    node_run_rows,
    open_node_runs,
    reaper_actions,
    recovery_bound,
    wait_all,
    wait_until,
)
from tests.integration.api_steps import create_flow, start_run, wait_for

pytestmark = pytest.mark.faults


def _running_on(worker: str, ids: list[str], *, parts_only: bool = False) -> list[int]:
    """Node runs the worker is executing now (a batch node's own run stays `running` while its chord runs,
    with no task behind it: left out)."""
    from executions.models import NodeRun

    rows = NodeRun.objects.filter(execution_id__in=ids, status="running", worker=worker)
    if parts_only:
        rows = rows.filter(batch_index__isnull=False)
    return [pk for pk, data in rows.values_list("id", "input") if not (data or {}).get("batch_count")]


def _succeeded_parts(ids: list[str]) -> int:
    from executions.models import NodeRun

    return NodeRun.objects.filter(execution_id__in=ids, status="succeeded", batch_index__isnull=False).count()


def test_sigkilled_worker_loses_nothing_and_duplicates_nothing(stack, live_api, live_db):
    # Given batch executions (batches of ~300 ms, 2 lanes each) and linear ones, all on worker w1
    batch_flow = create_flow(live_api, BATCH_FLOW)
    linear_flow = create_flow(live_api, LINEAR_FLOW)
    inputs = {start_run(live_api, batch_flow, batch_input(k)): batch_input(k) for k in range(BATCH_RUNS)}
    linear_ids = [start_run(live_api, linear_flow, {"busy_ms": NODE_MS}) for _ in range(LINEAR_RUNS)]
    ids = [*inputs, *linear_ids]
    w1 = stack.worker_hostname("w1")
    # When w1 is in the middle of it (some batches done, nodes running on it)
    wait_until(lambda: _succeeded_parts(ids) >= 2 and len(_running_on(w1, ids)) >= 2, 60, "w1 busy mid-batch")
    mark = log_mark(stack)
    stack.kill_worker("w1")  # SIGKILL to the main process and its pool: nothing acks, nothing cleans up
    killed_at = time.monotonic()
    lost = _running_on(w1, ids)
    left = open_node_runs(ids)
    stack.start_worker("w2", concurrency=4)  # room for more than max_parallel: the lanes must hold it
    started_at = time.monotonic()
    # Then every execution completes on w2, within the reaper's bound
    work = (
        sum(1 for run in left if run[2] is not None) * BATCH_MS
        + sum(1 for run in left if run[1] in LINEAR_STEPS) * NODE_MS
    ) / 1000
    bound = recovery_bound(work)
    try:
        final = wait_all(ids, timeout=bound + 30)
        recovery = time.monotonic() - killed_at
    finally:
        stack.stop_worker("w2")
    actions = reaper_actions(stack, mark)
    print(
        f"\n[worker death] {len(ids)} executions, {len(lost)} node runs running on the killed worker, "
        f"{len(left)} open; replacement up {started_at - killed_at:.1f}s after the kill; "
        f"all terminal {recovery:.1f}s after the kill (bound {bound:.1f}s = STALE_AFTER {STALE_AFTER:g} + "
        f"REAPER_INTERVAL {REAPER_INTERVAL:g} + join grace 2 + work {work:.1f} + slack 10); reaper {dict(actions)}"
    )
    assert set(final.values()) == {"completed"}, final
    assert recovery < bound, f"recovery took {recovery:.1f}s, over the bound of {bound:.1f}s"
    # And no batch item was lost or processed twice
    for execution_id, given in inputs.items():
        check_batch_result(wait_for(live_api, execution_id), given["numbers"])
        # the re-driven lanes kept max_parallel (2): the reaper re-sent each lane as a chain
        assert max_batch_overlap(execution_id) <= 2
    for execution_id in linear_ids:
        assert wait_for(live_api, execution_id)["results"]["trail"] == list(LINEAR_STEPS)
    # And the runs the dead worker held were failed as lost and run again, once, by the new worker
    rows = {row["id"]: row for execution_id in ids for row in node_run_rows(execution_id)}
    for run_id in lost:
        assert rows[run_id]["status"] == "failed" and "worker lost" in rows[run_id]["error"], rows[run_id]
    assert actions["recovered"] >= len(lost), actions
    for execution_id in ids:
        latest: dict[tuple, dict] = {}
        for row in node_run_rows(execution_id):
            latest[(row["node_id"], row["batch_index"])] = row
        assert all(row["status"] == "succeeded" for row in latest.values()), latest


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_sigkilled_pool_processes_are_replaced_and_their_runs_run_again(stack, live_api, live_db):
    # Given linear executions whose nodes take NODE_MS * 5 each, two of them running on w1's pool processes
    linear_flow = create_flow(live_api, LINEAR_FLOW)
    busy = NODE_MS * 5
    ids = [start_run(live_api, linear_flow, {"busy_ms": busy}) for _ in range(2)]
    w1 = stack.worker_hostname("w1")
    wait_until(lambda: len(_running_on(w1, ids)) >= 2, 60, "both pool processes busy")
    # When the pool processes (not the worker's main process) are SIGKILLed
    lost = _running_on(w1, ids)
    main = stack.children["worker-w1"].pid
    pool = _children(main)
    assert pool, "no pool process found"
    mark = log_mark(stack)
    killed_at = time.monotonic()
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    # Then the worker forks new ones and both executions complete, the killed nodes run again
    bound = recovery_bound(len(LINEAR_STEPS) * busy / 1000)
    final = wait_all(ids, timeout=bound + 30)
    recovery = time.monotonic() - killed_at
    rows = {row["id"]: row for execution_id in ids for row in node_run_rows(execution_id)}
    rerun = sum(1 for run_id in lost if rows[run_id]["status"] == "failed")
    print(
        f"\n[pool process death] {len(pool)} pool processes killed while running {len(lost)} nodes; all terminal "
        f"{recovery:.1f}s later (bound {bound:.1f}s); attempts lost and run again: {rerun}; "
        f"reaper {dict(reaper_actions(stack, mark))}"
    )
    assert set(final.values()) == {"completed"}, final
    assert stack.children["worker-w1"].alive() and stack.children["worker-w1"].pid == main
    assert recovery < bound
    assert rerun == len(lost)  # each interrupted attempt failed as lost, and a new one ran
    for execution_id in ids:
        assert wait_for(live_api, execution_id)["results"]["trail"] == list(LINEAR_STEPS)


def test_a_node_that_kills_its_worker_every_time_fails_after_three_lost_attempts(stack, live_api, live_db):
    from executions.models import NodeRun

    # Given a node that is running whenever we look (3 s of work): a stand-in for a poison pill
    execution_id = start_run(live_api, create_flow(live_api, LINEAR_FLOW), {"busy_ms": 3000})
    w1 = stack.worker_hostname("w1")
    started = time.monotonic()
    # When its worker process dies every time it runs it
    for attempt in (1, 2, 3):
        run_id = wait_until(
            lambda attempt=attempt: NodeRun.objects.filter(
                execution_id=execution_id, node_id="a", attempt=attempt, status="running", worker=w1
            ).first(),
            60,
            f"attempt {attempt} of node a running",
        ).id
        for pid in _children(stack.children["worker-w1"].pid):
            os.kill(pid, signal.SIGKILL)
    # Then the reaper gives up after the third lost attempt: the node fails, the execution with it
    status = wait_for(live_api, execution_id, timeout=3 * recovery_bound(3) + 30)
    print(
        f"\n[poison pill] 3 lost attempts, execution failed {time.monotonic() - started:.1f}s after the start"
    )
    assert status["status"] == "failed", status
    assert "3 attempts lost, giving up" in status["error"], status["error"]
    runs = [row for row in node_run_rows(execution_id) if row["node_id"] == "a"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all(r["error"].startswith("worker lost") for r in runs) and runs[-1]["id"] == run_id
