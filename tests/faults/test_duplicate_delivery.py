"""Duplicated delivery: node tasks sent again for runs already done, running or queued change nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults.steps import (
    BATCH_FLOW,
    LINEAR_FLOW,
    batch_input,
    node_run_rows,
    wait_tasks_done,
    wait_until,
)
from tests.integration.api_steps import create_flow, start_run, wait_for

pytestmark = pytest.mark.faults


def snapshot(execution_id: str) -> dict[str, Any]:
    """Everything a duplicate could change: the execution row, its node runs and its events."""
    from executions.models import Execution, ExecutionEvent

    execution = Execution.objects.values(
        "status", "progress", "current_node", "data", "node_outputs", "results", "error", "steps",
        "started_at", "finished_at", "last_event_seq",
    ).get(id=execution_id)  # fmt: skip
    events = list(
        ExecutionEvent.objects.filter(execution_id=execution_id)
        .order_by("seq")
        .values("seq", "type", "payload")
    )
    return {"execution": execution, "node_runs": node_run_rows(execution_id), "events": events}


def shape(execution_id: str) -> dict[str, Any]:
    """What two runs of the same linear flow share: the route, attempts, events in order, and the result."""
    snap = snapshot(execution_id)
    return {
        "runs": [(r["node_id"], r["batch_index"], r["attempt"], r["status"]) for r in snap["node_runs"]],
        "events": [
            (e["type"], e["payload"].get("node_id"), (e["payload"].get("node") or {}).get("status"))
            for e in snap["events"]
        ],
        "results": snap["execution"]["results"],
        "status": snap["execution"]["status"],
    }


def _send_and_wait(stack, task: str, node_run_id: int, copies: int = 1) -> None:  # noqa: ANN001
    client = stack.client_app()
    wait_tasks_done(stack, [client.send_task(task, args=[node_run_id]).id for _ in range(copies)])


def test_tasks_redelivered_for_finished_and_running_runs_change_nothing(stack, live_api, live_db):
    # Given a finished batch execution and a finished linear one
    batch_id = start_run(live_api, create_flow(live_api, BATCH_FLOW), batch_input(0, items=4, busy_ms=10))
    linear_flow = create_flow(live_api, LINEAR_FLOW)
    linear_id = start_run(live_api, linear_flow, {"busy_ms": 10})
    for execution_id in (batch_id, linear_id):
        assert wait_for(live_api, execution_id)["status"] == "completed"
    before = {execution_id: snapshot(execution_id) for execution_id in (batch_id, linear_id)}
    # When every one of their tasks is delivered again, twice: node, batch part and chord callback
    for execution_id in (batch_id, linear_id):
        for run in before[execution_id]["node_runs"]:
            is_parent = run["batch_index"] is None and run["node_id"] == "fan_out"
            task = "flowrunner.run_node" if run["batch_index"] is None else "flowrunner.run_batch"
            _send_and_wait(stack, task, run["id"], copies=2)
            if is_parent:
                _send_and_wait(stack, "flowrunner.join_batches", run["id"], copies=2)
    # Then nothing changed: no node run, no event, not a byte of the document
    for execution_id in (batch_id, linear_id):
        assert snapshot(execution_id) == before[execution_id]

    # Given a linear execution whose first node is running (2 s of work)
    slow_id = start_run(live_api, linear_flow, {"busy_ms": 2000})
    control_id = start_run(live_api, linear_flow, {"busy_ms": 2000})
    first = wait_until(lambda: _running(slow_id, "a"), 30, "node a running")
    # When its task is delivered twice more while it runs
    _send_and_wait(stack, "flowrunner.run_node", first, copies=2)
    # Then it ends exactly like an execution nobody disturbed
    for execution_id in (slow_id, control_id):
        assert wait_for(live_api, execution_id, timeout=60)["status"] == "completed"
    assert shape(slow_id) == shape(control_id)


def _running(execution_id: str, node_id: str) -> int | None:
    from executions.models import NodeRun

    run = NodeRun.objects.filter(execution_id=execution_id, node_id=node_id, status="running").first()
    return run.id if run else None


def test_a_queued_run_delivered_three_times_at_once_runs_once(stack, live_api, live_db, celery_client):
    from executions.models import NodeRun

    linear_flow = create_flow(live_api, LINEAR_FLOW)
    control_id = start_run(live_api, linear_flow, {"busy_ms": 50})
    assert wait_for(live_api, control_id)["status"] == "completed"
    # Given no worker running, a new execution whose first node run is queued (its message waits in Redis)
    stack.stop_worker("w1")
    execution_id = start_run(live_api, linear_flow, {"busy_ms": 50})
    first = NodeRun.objects.get(execution_id=execution_id, node_id="a")
    assert first.status == "queued"
    # When the same task is sent twice more, and a worker with 4 processes takes all three at once
    copies = [celery_client.send_task("flowrunner.run_node", args=[first.id]).id for _ in range(2)]
    started = time.monotonic()
    stack.start_worker("dup", concurrency=4)
    try:
        status = wait_for(live_api, execution_id, timeout=60)
        wait_tasks_done(stack, copies)
    finally:
        stack.stop_worker("dup")
    print(
        f"\n[duplicate delivery] queued run sent 3 times: execution done {time.monotonic() - started:.1f}s later"
    )
    # Then node a ran once (one row, attempt 1), and the execution is identical to the undisturbed one
    assert status["status"] == "completed", status
    assert [r["attempt"] for r in node_run_rows(execution_id) if r["node_id"] == "a"] == [1]
    assert shape(execution_id) == shape(control_id)
