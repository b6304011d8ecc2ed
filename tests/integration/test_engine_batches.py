"""Parallel batches: a chord over batch tasks, max_parallel lanes, per-batch retries, isolation and the join."""

from __future__ import annotations

from datetime import datetime

from tests.integration.api_steps import node_runs, run_to_end

BATCH = """
metadata: {name: batch}
nodes:
  fan_out:
    type: parallel_batch
    params:
      items: "${input.numbers}"
      batch_size: 2
      processor_script: |
        if (input.items.includes(13)) throw new Error("unlucky batch " + input.batch_index);
        return {doubled: input.items.map(x => x * 2), total: input.items.reduce((a, b) => a + b, 0)};
    batch: {max_parallel: 2}
    retry: {max_retries: 1, wait: 100ms}
    next: {success: done}
  done:
    type: transform
    params: {script: "return {summary: input.batch_count + ':' + input.failed_batches.join(',')}"}
"""


def _max_overlap(runs: list[dict]) -> int:
    events = []
    for run in runs:
        events.append((datetime.fromisoformat(run["started_at"]), 1))
        events.append((datetime.fromisoformat(run["finished_at"]), -1))
    events.sort(key=lambda item: (item[0], item[1]))
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def test_batch_join_isolates_failures_and_merges_outputs(live_api):
    # Given 10 numbers in batches of 2, one batch containing 13 always fails (1 retry)
    numbers = [1, 2, 3, 4, 13, 6, 7, 8, 9, 10]
    execution_id, status = run_to_end(live_api, BATCH, {"numbers": numbers})
    # Then the node succeeds with the other batches joined: lists concatenate, numbers add
    assert status["status"] == "completed", status
    results = status["results"]
    assert results["batch_count"] == 5
    assert results["failed_batches"] == [2]
    assert results["failed_items"] == 2
    assert results["doubled"] == [2, 4, 6, 8, 14, 16, 18, 20]
    assert results["total"] == sum(numbers) - 13 - 6
    assert results["summary"] == "5:2"
    # And the failing batch was retried on its own (2 attempts), the others ran once
    parts = [r for r in node_runs(live_api, execution_id) if r["batch_index"] is not None]
    attempts = {}
    for part in parts:
        attempts[part["batch_index"]] = max(attempts.get(part["batch_index"], 0), part["attempt"])
    assert attempts == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}


SLOW_BATCH = """
metadata: {name: slow batch}
nodes:
  fan_out:
    type: parallel_batch
    params:
      items: "${input.numbers}"
      batch_size: 1
      processor_script: |
        const end = Date.now() + 300;
        while (Date.now() < end) {}
        return {seen: input.items};
    batch: {max_parallel: 2}
"""


def test_max_parallel_bounds_batches_in_flight(live_stack, live_api):
    # Given a worker with 4 processes and 8 batches of ~300ms with max_parallel 2
    live_stack.start_worker("wide", concurrency=4)
    try:
        execution_id, status = run_to_end(live_api, SLOW_BATCH, {"numbers": list(range(8))})
    finally:
        live_stack.stop_worker("wide")
    assert status["status"] == "completed", status
    assert sorted(status["results"]["seen"]) == list(range(8))
    parts = [r for r in node_runs(live_api, execution_id) if r["batch_index"] is not None]
    # Then never more than 2 batches overlapped, and 2 did (the bound is used, not serialised)
    assert _max_overlap(parts) == 2


ALL_FAIL = """
metadata: {name: all fail}
nodes:
  fan_out:
    type: batch
    params:
      items: "${input.numbers}"
      processor_script: "throw new Error('bad item ' + input.items[0])"
    next: {error: handler}
  handler:
    type: transform
    params: {script: "return {failed: input.failed_batches.length, where: input.error.node_id}"}
"""


def test_batch_node_with_every_batch_failing_takes_error_edge(live_api):
    _, status = run_to_end(live_api, ALL_FAIL, {"numbers": [1, 2, 3]})
    assert status["status"] == "completed", status["error"]
    assert status["results"]["failed"] == 3
    assert status["results"]["where"] == "fan_out"


DEADLINE = """
metadata: {name: deadline}
nodes:
  fan_out:
    type: parallel_batch
    timeout: 1s
    params:
      items: "${input.numbers}"
      processor_script: |
        const end = Date.now() + 700;
        while (Date.now() < end) {}
        return {seen: input.items};
    batch: {max_parallel: 1}
    next: {timeout: late, success: on_time}
  late: {type: transform, params: {script: "return {path: 'timeout', got: (input.seen || []).length}"}}
  on_time: {type: transform, params: {script: "return {path: 'success'}"}}
"""


def test_batch_deadline_revokes_unfinished_batches_and_follows_timeout_edge(live_api):
    # Given 5 serial batches of 700ms under a 1s deadline
    execution_id, status = run_to_end(live_api, DEADLINE, {"numbers": [1, 2, 3, 4, 5]})
    # Then the timeout edge runs with what finished, and the unfinished batches are timed out
    assert status["status"] == "completed", status
    assert status["results"]["path"] == "timeout"
    assert status["results"]["got"] < 5
    parts = [r for r in node_runs(live_api, execution_id) if r["batch_index"] is not None]
    assert any(p["status"] == "timed_out" for p in parts)
