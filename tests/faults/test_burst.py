"""Load: a burst of executions all reach a terminal state, none left queued or running; the rates are reported."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.steps import (
    BURST,
    BURST_WORKERS,
    env_int,
    log_mark,
    open_node_runs,
    reaper_actions,
    wait_all,
)
from tests.integration.api_steps import create_flow, start_run

pytestmark = pytest.mark.faults

CLIENTS = env_int("FLOWRUNNER_FAULTS_BURST_CLIENTS", 8)  # concurrent HTTP clients posting the burst

THREE_STEPS = """
metadata: {name: burst}
nodes:
  first: {type: transform, params: {script: "return {n: input.n, steps: 1}"}, next: {success: second}}
  second: {type: transform, params: {script: "return {steps: input.steps + 1}"}, next: {success: third}}
  third: {type: transform, params: {script: "return {done: input.n, steps: input.steps + 1}"}}
"""


def test_a_burst_of_executions_all_finish(stack, live_api, live_db, live_user):
    from django.db.models import Max, Min

    from executions.models import Execution, NodeRun

    extra = [f"burst{i}" for i in range(1, BURST_WORKERS)]  # w1 is the first of them
    for name in extra:
        stack.start_worker(name, concurrency=2)
    flow_id = create_flow(live_api, THREE_STEPS)
    mark = log_mark(stack)
    local, clients = threading.local(), []

    def post(n: int) -> str:
        if not hasattr(local, "api"):  # one keep-alive client per posting thread
            local.api = stack.client(auth=live_user.auth)
            clients.append(local.api)
        return start_run(local.api, flow_id, {"n": n})

    try:
        # Given BURST executions posted as fast as CLIENTS concurrent clients can
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            ids = list(pool.map(post, range(BURST)))
        posted = time.monotonic() - started
        # Then every one of them ends, completed
        final = wait_all(ids, timeout=120 + BURST * 0.5, poll=0.5)
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            client.close()
        for name in extra:
            stack.stop_worker(name)
    node_runs = NodeRun.objects.filter(execution_id__in=ids).count()
    window = Execution.objects.filter(id__in=ids).aggregate(first=Min("created_at"), last=Max("finished_at"))
    busy = (window["last"] - window["first"]).total_seconds()
    actions = reaper_actions(stack, mark)
    print(
        f"\n[burst] {BURST} executions ({node_runs} node runs), {CLIENTS} clients, {BURST_WORKERS} worker(s) x 2 "
        f"processes: posted in {posted:.1f}s ({BURST / posted:.0f}/s); all terminal {elapsed:.1f}s after the "
        f"first post: {BURST / elapsed:.1f} executions/s, {node_runs / elapsed:.1f} node runs/s (first created "
        f"to last finished {busy:.1f}s); reaper {dict(actions)}"
    )
    assert set(final.values()) == {"completed"}, {
        s: list(final.values()).count(s) for s in set(final.values())
    }
    # And nothing is left queued or running (PostgreSQL, not the API, is asked)
    assert not Execution.objects.filter(id__in=ids, status__in=("queued", "running")).exists()
    assert not open_node_runs(ids)
    assert node_runs == 3 * BURST  # one attempt per node: no duplicate ran anything twice
    results = Execution.objects.filter(id__in=ids).values_list("results", flat=True)
    assert sorted(r["done"] for r in results) == list(range(BURST))
