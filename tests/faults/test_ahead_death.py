"""Worker death while a pure node runs ahead of its claim: it runs again, is recorded once, and a node that
kills its worker every time is still bounded by the lost-attempt count."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.steps import BUSY, STALE_AFTER, node_run_rows, recovery_bound, wait_until
from tests.faults.test_worker_death import _children
from tests.integration.api_steps import create_flow, start_run, wait_for

pytestmark = pytest.mark.faults

# A node runs ahead of its claim only when its scripts' limit is under half of STALE_AFTER (5 s here).
LIMIT = f"{STALE_AFTER / 2 - 0.5:g}s"


def _node(name: str, following: str | None, busy: str = "0") -> str:
    edge = f"\n    next: {{success: {following}}}" if following else ""
    return f"""
  {name}:
    type: transform
    timeout: {LIMIT}
    params:
      script: |
        {BUSY.format(ms=busy)}
        return {{trail: (input.trail || []).concat(["{name}"])}};{edge}"""


AHEAD_FLOW = "metadata: {name: faults ahead}\nnodes:" + "".join(
    [_node("a", "b"), _node("b", "c", busy="input.busy_ms"), _node("c", None)]
)


def _b_runs(execution_id: str) -> list[dict]:
    return [row for row in node_run_rows(execution_id) if row["node_id"] == "b"]


def _kill_pool(stack) -> None:  # noqa: ANN001
    for pid in _children(stack.children["worker-w1"].pid):
        os.kill(pid, signal.SIGKILL)


def _b_ahead(execution_id: str) -> bool:
    """b's task has been running its script for a while, ahead of its claim: its run is still `queued`."""
    runs = _b_runs(execution_id)
    return len(runs) == 1 and runs[0]["status"] == "queued"


def test_a_pool_process_killed_ahead_of_a_claim_runs_the_node_again_once(stack, live_api, live_db):
    # Given a linear flow of pure nodes whose middle node computes for 1.5 s, run ahead of its claim
    execution_id = start_run(live_api, create_flow(live_api, AHEAD_FLOW), {"busy_ms": 1500})
    wait_until(lambda: _b_ahead(execution_id), 60, "node b queued")
    time.sleep(0.5)
    assert _b_ahead(execution_id), "b was claimed: it did not run ahead of its claim"
    # When the worker's pool processes are SIGKILLed in the middle of b's script
    killed_at = time.monotonic()
    _kill_pool(stack)
    # Then the message comes back, the node is claimed and run again, and the execution completes
    status = wait_for(live_api, execution_id, timeout=recovery_bound(3) + 30)
    print(f"\n[ahead death] completed {time.monotonic() - killed_at:.1f}s after the kill")
    assert status["status"] == "completed", status
    assert status["results"]["trail"] == ["a", "b", "c"]
    # And the attempt that died ahead of its claim left nothing: b has one run, which succeeded
    assert [(run["attempt"], run["status"]) for run in _b_runs(execution_id)] == [(1, "succeeded")]


def test_a_pure_node_that_kills_its_worker_every_time_still_fails_after_three_lost_attempts(
    stack, live_api, live_db
):
    from executions.models import NodeRun

    # Given a pure node that computes for 1.8 s, run ahead of its claim at first
    execution_id = start_run(live_api, create_flow(live_api, AHEAD_FLOW), {"busy_ms": 1800})
    wait_until(lambda: _b_ahead(execution_id), 60, "node b queued")
    time.sleep(0.4)
    assert _b_ahead(execution_id), "b was claimed: it did not run ahead of its claim"
    # When its worker process dies ahead of the claim, and then every time it runs it
    _kill_pool(stack)
    for attempt in (1, 2, 3):
        wait_until(
            lambda attempt=attempt: NodeRun.objects.filter(
                execution_id=execution_id, node_id="b", attempt=attempt, status="running"
            ).exists(),
            60,
            f"attempt {attempt} of node b running",
        )
        _kill_pool(stack)
    # Then the message that came back was claimed before running (not ahead again, forever): three lost
    # attempts are counted, and the node fails for good
    status = wait_for(live_api, execution_id, timeout=3 * recovery_bound(2) + 30)
    assert status["status"] == "failed", status
    assert "3 attempts lost, giving up" in status["error"], status["error"]
    runs = _b_runs(execution_id)
    assert [(run["attempt"], run["status"]) for run in runs] == [(1, "failed"), (2, "failed"), (3, "failed")]
