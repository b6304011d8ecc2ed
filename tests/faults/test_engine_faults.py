"""Engine faults with real workers: a lost retry attempt, a failing batch finish, a redelivered batch node,
values PostgreSQL cannot store, a zero-item batch whose join was lost, and a thousand-part batch."""

from __future__ import annotations

import time

import pytest

from tests.faults.steps import (
    BATCH_FLOW,
    STALE_AFTER,
    batch_input,
    check_batch_result,
    event_rows,
    max_batch_overlap,
    node_run_rows,
    recovery_bound,
    wait_tasks_done,
    wait_until,
)
from tests.integration.api_steps import create_flow, start_run, wait_for

pytestmark = pytest.mark.faults

LOST_RETRY_FLOW = """
metadata: {name: lost retry}
nodes:
  flaky:
    type: transform
    params:
      script: |
        if (execution.attempt < 2) throw new Error("the first attempt fails");
        const end = Date.now() + input.busy_ms; while (Date.now() < end) {}
        return {ran_on_attempt: execution.attempt};
    retry: {max_retries: 3, wait: 100ms, backoff: constant}
"""


def test_worker_lost_during_a_retry_attempt_runs_the_node_again(stack, live_api, live_db):
    from executions.models import NodeRun

    # Given a node that fails its first attempt and computes for 3.5 s on its second, on worker w1
    execution_id = start_run(live_api, create_flow(live_api, LOST_RETRY_FLOW), {"busy_ms": 3500})
    w1 = stack.worker_hostname("w1")
    wait_until(
        lambda: NodeRun.objects.filter(
            execution_id=execution_id, attempt=2, status="running", worker=w1
        ).exists(),
        60,
        "attempt 2 running on w1",
    )
    # When the whole worker is SIGKILLed during attempt 2 and another takes its place
    stack.kill_worker("w1")
    stack.start_worker("w1")
    # Then the node really runs again (attempt 3) and the execution completes with its result
    status = wait_for(live_api, execution_id, timeout=recovery_bound(3.5) + 30)
    assert status["status"] == "completed", status
    assert status["results"] == {"busy_ms": 3500, "ran_on_attempt": 3}, status["results"]
    runs = [(r["attempt"], r["status"]) for r in node_run_rows(execution_id)]
    assert runs == [(1, "failed"), (2, "failed"), (3, "succeeded")], runs
    assert node_run_rows(execution_id)[1]["error"].startswith("worker lost"), node_run_rows(execution_id)[1]


@pytest.fixture
def failing_part_finishes(live_db):
    """A trigger that makes the first two batch-part finishes (to `succeeded`, from running or, for a part run
    ahead of its claim, from queued) raise inside PostgreSQL."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE SEQUENCE IF NOT EXISTS test_fault_finishes;
            CREATE OR REPLACE FUNCTION test_fail_part_finish() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.parent_id IS NOT NULL AND NEW.status = 'succeeded' AND OLD.status IN ('running', 'queued')
                   AND nextval('test_fault_finishes') <= 2 THEN
                    RAISE EXCEPTION 'injected fault in a batch finish';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_fail_part_finish BEFORE UPDATE ON executions_noderun
                FOR EACH ROW EXECUTE FUNCTION test_fail_part_finish();
            """
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER IF EXISTS test_fail_part_finish ON executions_noderun;"
                "DROP FUNCTION IF EXISTS test_fail_part_finish(); DROP SEQUENCE IF EXISTS test_fault_finishes;"
            )


def test_database_error_in_a_batch_finish_fails_that_part_once_and_keeps_max_parallel(
    stack, live_api, live_db, failing_part_finishes
):
    # Given a batch node of 8 parts, 2 at a time, on a worker with room for 4, whose first two finishes fail
    stack.start_worker("wide", concurrency=4)
    try:
        given = batch_input(0, items=8, busy_ms=150)
        execution_id = start_run(live_api, create_flow(live_api, BATCH_FLOW), given)
        # When it runs
        status = wait_for(live_api, execution_id, timeout=60)
    finally:
        stack.stop_worker("wide")
    # Then the two parts whose finish failed are failed once, at once, with the database's reason
    assert status["status"] == "completed", status
    parts = [r for r in node_run_rows(execution_id) if r["batch_index"] is not None]
    failed = [r for r in parts if r["status"] == "failed"]
    assert len(failed) == 2 and all("injected fault" in r["error"] for r in failed), failed
    assert all(r["attempt"] == 1 for r in parts), "a part whose finish failed was run again"
    assert len(parts) == 8
    # And never more than max_parallel parts ran at once
    assert max_batch_overlap(execution_id) <= 2
    assert status["results"]["failed_items"] == 2 and len(status["results"]["seen"]) == 6


def test_redelivered_batch_node_task_creates_no_second_set_of_parts(stack, live_api, live_db):
    from executions.models import NodeRun

    # Given a batch node whose parts are running
    given = batch_input(0, items=6, busy_ms=400)
    execution_id = start_run(live_api, create_flow(live_api, BATCH_FLOW), given)
    parent = wait_until(
        lambda: NodeRun.objects.filter(
            execution_id=execution_id, parent__isnull=True, node_id="fan_out", parts_total__isnull=False
        ).first(),
        30,
        "the batch node's parts created",
    )
    # When its task is delivered again, with its own task id (a redelivery) and with a new one (a duplicate)
    client = stack.client_app()
    sent = [client.send_task("flowrunner.run_node", args=[parent.id], task_id=parent.task_id).id]
    sent += [client.send_task("flowrunner.run_node", args=[parent.id]).id for _ in range(2)]
    wait_tasks_done(stack, sent)
    # Then the execution completes with one set of parts: every item once
    status = wait_for(live_api, execution_id, timeout=60)
    assert status["status"] == "completed", status
    check_batch_result(status, given["numbers"])
    parts = NodeRun.objects.filter(execution_id=execution_id, batch_index__isnull=False)
    assert parts.count() == 6
    assert set(parts.values_list("parent_id", flat=True)) == {parent.id}
    assert NodeRun.objects.get(id=parent.id).status == "succeeded"


UNSTORABLE_FLOW = """
metadata: {name: unstorable}
nodes:
  dirty:
    type: transform
    params:
      script: |
        console.log("a log line with a NUL \\u0000 inside", {bad: "x\\u0000y"});
        return {text: "before\\u0000after", lone: "\\ud800", n: input.n + 1};
    next: {success: after}
  after:
    type: transform
    params: {script: "return {after: input.text.length}"}
"""


def test_values_postgresql_cannot_store_are_sanitised_and_run_once(stack, live_api, live_db):
    # Given a script that logs and returns strings holding NUL and a lone surrogate
    execution_id = start_run(live_api, create_flow(live_api, UNSTORABLE_FLOW), {"n": 1})
    # When it runs
    status = wait_for(live_api, execution_id, timeout=30)
    # Then the execution completes at once, each node run once, the bad characters replaced
    assert status["status"] == "completed", status
    results = status["results"]
    assert results["text"] == "before\ufffdafter" and results["lone"] == "\ufffd" and results["n"] == 2
    assert results["after"] == len("before\ufffdafter")
    assert [(r["node_id"], r["attempt"], r["status"]) for r in node_run_rows(execution_id)] == [
        ("dirty", 1, "succeeded"),
        ("after", 1, "succeeded"),
    ]
    logs = [row for row in event_rows(execution_id) if row[1] == "log"]
    assert len(logs) == 1


EMPTY_BATCH_FLOW = """
metadata: {name: empty batch}
nodes:
  fan_out:
    type: parallel_batch
    params: {items: "${input.numbers}", batch_size: 1}
    next: {success: done}
  done:
    type: transform
    params: {script: "return {joined: input.batch_count}"}
"""


def test_zero_item_batch_whose_inline_join_was_lost_is_joined_by_the_reaper(stack, live_api, live_db):
    from executions.models import NodeRun

    # Given a batch node over no items whose inline join never happened (as if its worker died right after
    # creating no parts): the run is left running with its (empty) parts counted
    stack.stop_worker("w1")
    try:
        execution_id = start_run(live_api, create_flow(live_api, EMPTY_BATCH_FLOW), {"numbers": []})
        parent = NodeRun.objects.get(execution_id=execution_id, node_id="fan_out")
        NodeRun.objects.filter(id=parent.id).update(
            status="running", parts_total=0, parts_done=0, started_at=parent.queued_at, heartbeat_at=None
        )
        from executions.models import Execution

        Execution.objects.filter(id=execution_id).update(status="running")
    finally:
        stack.start_worker("w1")
    # When the reaper passes
    status = wait_for(live_api, execution_id, timeout=STALE_AFTER + 30)
    # Then the batch node is joined and the flow goes on
    assert status["status"] == "completed", status
    assert status["results"]["joined"] == 0


def test_a_thousand_part_batch_completes_with_every_item_once(stack, live_api, live_db):
    # Given a batch node of 1,000 parts (batch_size 1), 2 at a time
    given = batch_input(7, items=1000, busy_ms=0)
    started = time.monotonic()
    execution_id = start_run(live_api, create_flow(live_api, BATCH_FLOW), given)
    # When it runs
    status = wait_for(live_api, execution_id, timeout=300)
    # Then every item was processed once and the parts never overlapped beyond max_parallel
    print(f"\n[1000 parts] completed in {time.monotonic() - started:.1f}s")
    assert status["status"] == "completed", status
    check_batch_result(status, given["numbers"])
    assert max_batch_overlap(execution_id) <= 2
