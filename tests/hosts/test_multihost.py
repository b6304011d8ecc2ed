"""Workers on separate hosts: `queue:` routing sends each node to its host; a host cut off mid-node is recovered
on another host consuming its queue, nothing runs twice, and the host rejoins when its link returns.

Run with -s to see the hosts, their addresses, where each node ran and the recovery time."""

from __future__ import annotations

import time

import pytest

from tests.faults.steps import REAPER_INTERVAL, STALE_AFTER, node_run_rows, wait_tasks_done, wait_until
from tests.integration.api_steps import create_flow, node_runs, start_run, wait_for

pytestmark = pytest.mark.faults

BUSY = "const end = Date.now() + {ms}; while (Date.now() < end) {{}}"


def _node(name: str, queue: str, ms: str, following: str | None) -> str:
    edge = f"\n    next: {{success: {following}}}" if following else ""
    return f"""
  {name}:
    type: transform
    queue: {queue}
    params:
      script: |
        {BUSY.format(ms=ms)}
        return {{trail: (input.trail || []).concat(["{name}"])}};{edge}"""


# a and c on host A's queue, b on host B's; b is as long as the input says (the link is cut while it runs).
FLOW = (
    "metadata: {name: hosts routing}\nnodes:"
    + _node("a", "a", "50", "b")
    + _node("b", "b", "input.b_ms", "c")
    + _node("c", "a", "50", None)
)
LONG_B_MS = 6000
# The documented bound: a run without a heartbeat for FLOWRUNNER_STALE_AFTER is re-driven on the reaper's next
# pass; the slack covers the standby's claim and a loaded machine.
RECOVERY_BOUND = STALE_AFTER + REAPER_INTERVAL + 5.0


@pytest.fixture(scope="module")
def host_workers(live_stack, hosts):
    """wa on host-a (queues celery and a), wb on host-b (queue b, one process: it holds nothing while busy)."""
    live_stack.start_host_worker("wa", hosts["host-a"], ["celery", "a"], concurrency=2)
    live_stack.start_host_worker("wb", hosts["host-b"], ["b"])
    print("\n[hosts] " + "; ".join(host.describe() for host in hosts.values()))
    return live_stack


def _where(api, execution_id: str) -> dict[str, list[tuple[str, str]]]:  # noqa: ANN001
    ran: dict[str, list[tuple[str, str]]] = {}
    for run in node_runs(api, execution_id):
        ran.setdefault(run["node_id"], []).append((run["status"], run["worker"]))
    return ran


def test_multihost_queue_routing_runs_each_node_on_its_host(host_workers, live_api, live_db):
    # Given host A consuming queue a and host B consuming queue b
    flow = create_flow(live_api, FLOW)
    # When a flow whose nodes declare queue a, b, a runs
    execution_id = start_run(live_api, flow, {"b_ms": 50})
    status = wait_for(live_api, execution_id, timeout=60)
    # Then every node ran once, on the host of its queue (the `worker` of GET .../nodes)
    assert status["status"] == "completed", status
    assert status["results"]["trail"] == ["a", "b", "c"]
    where = _where(live_api, execution_id)
    print(f"\n[hosts] routing: {where}")
    assert where == {
        "a": [("succeeded", "wa@host-a")],
        "b": [("succeeded", "wb@host-b")],
        "c": [("succeeded", "wa@host-a")],
    }


def _b_running(api, execution_id: str) -> str | None:  # noqa: ANN001
    return next(
        (worker for status, worker in _where(api, execution_id).get("b", []) if status == "running"), None
    )


def test_multihost_link_cut_recovers_on_another_host_and_rejoins(host_workers, hosts, live_api, live_db):
    stack = host_workers
    # Given node b running on host B, and a standby worker on host C that consumes queue b from then on (told
    # to by Celery's remote control, so that b cannot have started on C)
    stack.start_host_worker("wc", hosts["host-c"], ["standby"])
    flow = create_flow(live_api, FLOW)
    execution_id = start_run(live_api, flow, {"b_ms": LONG_B_MS})
    first = wait_until(lambda: _b_running(live_api, execution_id), 30, "b running")
    assert first == "wb@host-b"
    other = "wc@host-c"
    replies = stack.client_app().control.add_consumer("b", destination=[other], reply=True, timeout=10)
    assert replies and "ok" in replies[0][other], replies
    name, hostname = first.split("@")
    cut_host = hosts[hostname]
    # When that host's link is cut while b runs
    cut_host.cut()
    cut_at = time.monotonic()
    # Then b is recovered on the other host consuming queue b, within the bound
    wait_until(
        lambda: any(worker == other for _, worker in _where(live_api, execution_id).get("b", [])),
        RECOVERY_BOUND + 15,
        f"b claimed on {other}",
        poll=0.1,
    )
    recovered = time.monotonic() - cut_at
    status = wait_for(live_api, execution_id, timeout=LONG_B_MS / 1000 + 30)
    completed = time.monotonic() - cut_at
    assert status["status"] == "completed", status
    assert recovered < RECOVERY_BOUND, (
        f"recovery took {recovered:.1f}s, over the bound of {RECOVERY_BOUND:.1f}s"
    )
    # When the link comes back: the host answers again and its cut-off task ends (its late write refused)
    cut_host.restore()
    restored_at = time.monotonic()
    stack.wait_for_workers([name], timeout=60)
    rejoined = time.monotonic() - restored_at
    from executions.models import NodeRun

    cut_off = NodeRun.objects.filter(execution_id=execution_id, node_id="b", worker=first)
    wait_tasks_done(stack, list(cut_off.values_list("task_id", flat=True)), timeout=60)
    rows = node_run_rows(execution_id)
    # Then nothing ran twice: b succeeded once (on the other host), the cut-off attempt is failed as lost,
    # a and c ran once each
    succeeded = sorted((row["node_id"], row["worker"]) for row in rows if row["status"] == "succeeded")
    assert succeeded == [("a", "wa@host-a"), ("b", other), ("c", "wa@host-a")], rows
    lost = [row for row in rows if row["node_id"] == "b" and row["worker"] == first]
    assert [row["status"] for row in lost] == ["failed"], rows
    assert wait_for(live_api, execution_id)["results"]["trail"] == ["a", "b", "c"]
    print(
        f"\n[hosts] link of {hostname} ({cut_host.ip}) cut while b ran on {first}; b recovered on {other} "
        f"{recovered:.1f}s after the cut (bound {RECOVERY_BOUND:.1f}s: stale after {STALE_AFTER:g}s + reaper "
        f"every {REAPER_INTERVAL:g}s + 5s); execution completed {completed:.1f}s after the cut; {hostname} "
        f"answered a ping {rejoined:.1f}s after its link was restored; node runs: "
        + ", ".join(f"{r['node_id']}#{r['attempt']} {r['status']} on {r['worker']}" for r in rows)
        + f"; the cut-off attempt's error: {lost[0]['error']!r}"
    )
    # And the rejoined host takes queue b again once the other one is gone
    stack.stop_worker(other.split("@")[0])
    again = start_run(live_api, flow, {"b_ms": 50})
    assert wait_for(live_api, again, timeout=60)["status"] == "completed"
    assert _where(live_api, again)["b"] == [("succeeded", first)]
