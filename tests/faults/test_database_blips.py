"""Database blips: terminate every backend of the test database mid-run, a few times; nothing is left stuck."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.faults.steps import (
    BATCH_FLOW,
    BATCH_MS,
    BATCH_RUNS,
    BLIPS,
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
from tests.integration.api_steps import create_flow, run_to_end, start_run

pytestmark = pytest.mark.faults

BLIP_GAP = env_float("FLOWRUNNER_FAULTS_BLIP_GAP", 1.5)  # seconds between two rounds of terminations


def terminate_backends() -> int:
    """pg_terminate_backend every other connection to this test database (never another database's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _lost_runs(ids: list[str]) -> int:
    from executions.models import NodeRun

    return NodeRun.objects.filter(execution_id__in=ids, error__startswith="worker lost").count()


def test_terminated_database_connections_are_replaced_and_nothing_is_stuck(
    stack, live_api, live_db, live_user
):
    # Given batch and linear executions in flight
    batch_flow = create_flow(live_api, BATCH_FLOW)
    linear_flow = create_flow(live_api, LINEAR_FLOW)
    inputs = {start_run(live_api, batch_flow, batch_input(k)): batch_input(k) for k in range(BATCH_RUNS)}
    linear_ids = [start_run(live_api, linear_flow, {"busy_ms": NODE_MS}) for _ in range(LINEAR_RUNS)]
    ids = [*inputs, *linear_ids]
    from executions.models import Execution, NodeRun

    wait_until(
        lambda: (
            NodeRun.objects.filter(
                execution_id__in=ids, status="succeeded", batch_index__isnull=False
            ).count()
            >= 2
        ),
        60,
        "batches under way",
    )
    # When every connection of web, workers and beat's reaper to the database is killed, a few times
    _fill_web_pool(stack, live_user.auth)
    mark = log_mark(stack)
    started = time.monotonic()
    left = open_node_runs(ids)
    terminated = []
    for _ in range(BLIPS):
        terminated.append(terminate_backends())
        time.sleep(BLIP_GAP)
    # Then every execution completes, nothing is left queued or running
    work = (
        sum(1 for run in left if run[2] is not None) * BATCH_MS
        + sum(1 for run in left if run[1] in LINEAR_STEPS) * NODE_MS
    ) / 1000
    bound = BLIPS * BLIP_GAP + recovery_bound(work)
    final = wait_all(ids, timeout=bound + 30)
    recovery = time.monotonic() - started
    assert not open_node_runs(ids)
    actions = reaper_actions(stack, mark)
    retried = logs_since(stack, mark).count("; retrying")
    print(
        f"\n[database blips] {len(ids)} executions; {BLIPS} rounds of pg_terminate_backend, {BLIP_GAP:g}s apart, "
        f"terminated {terminated} backends; all terminal {recovery:.1f}s after the first (bound {bound:.1f}s); "
        f"tasks retried on a database error: {retried}; attempts lost and run again: {_lost_runs(ids)}; "
        f"reaper {dict(actions)}"
    )
    assert set(final.values()) == {"completed"}, final
    assert all(count >= 1 for count in terminated), terminated
    assert recovery < bound, f"recovery took {recovery:.1f}s, over the bound of {bound:.1f}s"
    documents = dict(Execution.objects.filter(id__in=ids).values_list("id", "results"))
    for execution_id, given in inputs.items():
        check_batch_result({"results": documents[uuid.UUID(execution_id)]}, given["numbers"])
    for execution_id in linear_ids:
        assert documents[uuid.UUID(execution_id)]["trail"] == list(LINEAR_STEPS)
    # And the web process answers again (its pool replaced the dead connections), and a new run goes through
    assert len(stack.core()) == 3  # web, beat and w1 still alive
    wait_until(lambda: _answers(live_api), 30, "the API answering again", poll=0.5)
    health = stack.wait_healthy(min_workers=1, timeout=30)
    assert health["database"] == "ok", health
    _, status = run_to_end(live_api, LINEAR_FLOW, {"busy_ms": 10}, timeout=60)
    assert status["status"] == "completed", status


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/executions", params={"limit": 1}).status_code == 200
    except httpx.HTTPError:
        return False


def _fill_web_pool(stack, auth, clients: int = 8) -> None:  # noqa: ANN001
    """Several requests at once: the web process's pool grows to hold several idle connections."""

    def get(_: int) -> int:
        with stack.client(auth=auth) as api:
            return api.get("/executions", params={"limit": 50}).status_code

    with ThreadPoolExecutor(clients) as pool:
        assert set(pool.map(get, range(clients * 4))) == {200}


def test_the_first_request_after_a_blip_is_answered_at_once(stack, live_api, live_db, live_user):
    # Given a web process whose pool holds several idle connections
    _fill_web_pool(stack, live_user.auth)
    # When all of them are terminated
    assert terminate_backends() >= 1
    # Then the next request is answered at once, not after the pool's timeout
    started = time.monotonic()
    response = live_api.get("/executions", params={"limit": 1})
    elapsed = time.monotonic() - started
    print(f"\n[database blips] first request after the blip: {response.status_code} in {elapsed:.2f}s")
    assert response.status_code == 200 and elapsed < 2.0, (response.status_code, elapsed)
