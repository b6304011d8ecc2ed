"""Prometheus metrics of a real stack: daphne's /metrics and a prefork worker's --metrics-port, scraped after
runs whose outcome is known; the counters match what ran."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.api_steps import create_flow, start_run, wait_for
from tests.integration.processes import free_port

QUEUE = f"metrics-{uuid.uuid4().hex[:6]}"
TWO_STEPS = f"""
metadata: {{name: two steps}}
nodes:
  first:
    type: transform
    queue: {QUEUE}
    params: {{script: "return {{a: 1}}"}}
    next: {{success: second}}
  second:
    type: transform
    queue: {QUEUE}
    params: {{script: "return {{b: 2}}"}}
"""
FAILS = f"""
metadata: {{name: fails}}
nodes:
  boom:
    type: transform
    queue: {QUEUE}
    params: {{script: "throw new Error('no')"}}
"""


def scrape(url: str, token: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_worker(stack, tmp_path: Path):
    """A prefork worker (2 processes) consuming only QUEUE, serving its metrics on a port of its own."""
    port = free_port()
    directory = tmp_path / "prometheus"
    directory.mkdir()
    stack.start_worker(
        "wm",
        [QUEUE],
        default_queues=False,
        concurrency=2,
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
        args=["--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
    )
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stack.stop_worker("wm")


def test_metrics_counters_match_what_ran(stack, live_api, live_user, metrics_worker):
    token = stack.env["FLOWRUNNER_METRICS_TOKEN"]
    web = f"{stack.base_url}/metrics"
    # Given the web's counters before (the session's stack has served other tests) and a fresh worker
    before = scrape(web, token)
    assert httpx.get(metrics_worker, timeout=10).status_code == 401
    assert (
        httpx.get(metrics_worker, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code == 401
    )
    # When 3 two-node runs complete and 2 one-node runs fail, all on that worker, while a WebSocket watches
    two_steps, fails = create_flow(live_api, TWO_STEPS), create_flow(live_api, FAILS)
    executions = [start_run(live_api, two_steps) for _ in range(3)] + [
        start_run(live_api, fails) for _ in range(2)
    ]
    statuses = [wait_for(live_api, execution_id)["status"] for execution_id in executions]
    assert statuses == ["completed"] * 3 + ["failed"] * 2
    during_socket = asyncio.run(_scrape_while_subscribed(stack, live_user, executions[0], web, token))
    after = scrape(web, token)
    worker = _poll_worker(metrics_worker, token, expected_runs=8)
    # Then the web counted the 5 starts and the requests by route, and saw the socket and its frames
    started = "flowrunner_executions_started_total"
    assert value(after, started, trigger="api") - value(before, started, trigger="api") == 5
    run_route = {"method": "POST", "route": "api/v1/flows/<str:flow_id>/run", "status": "201"}
    assert (
        value(after, "flowrunner_http_request_duration_seconds_count", **run_route)
        - value(before, "flowrunner_http_request_duration_seconds_count", **run_route)
        == 5
    )
    assert value(during_socket, "flowrunner_websocket_connections") >= 1
    assert value(during_socket, "flowrunner_websocket_subscriptions") >= 1
    assert value(after, "flowrunner_websocket_frames_sent_total") > value(
        before, "flowrunner_websocket_frames_sent_total"
    )
    assert value(after, "flowrunner_queue_depth", queue=QUEUE) == 0
    # And the worker's two pool processes together ran 6 successful and 2 failed transform runs, ending 3
    # executions completed and 2 failed
    runs = "flowrunner_node_run_duration_seconds_count"
    assert value(worker, runs, kind="transform", outcome="succeeded") == 6
    assert value(worker, runs, kind="transform", outcome="failed") == 2
    assert value(worker, "flowrunner_executions_finished_total", status="completed") == 3
    assert value(worker, "flowrunner_executions_finished_total", status="failed") == 2
    assert (
        value(worker, "flowrunner_node_run_duration_seconds_sum", kind="transform", outcome="succeeded") > 0
    )


def test_metrics_queue_depth_counts_waiting_messages(stack, live_api):
    # Given a queue no worker consumes, and two runs whose first node goes there
    queue = f"idle-{uuid.uuid4().hex[:6]}"
    flow = create_flow(
        live_api,
        f"metadata: {{name: idle}}\nnodes:\n  n: {{type: transform, queue: {queue}, params: {{script: 'return 1'}}}}\n",
    )
    executions = [start_run(live_api, flow) for _ in range(2)]
    # When the web is scraped
    token = stack.env["FLOWRUNNER_METRICS_TOKEN"]
    deadline = time.monotonic() + 10
    while value(scrape(f"{stack.base_url}/metrics", token), "flowrunner_queue_depth", queue=queue) != 2:
        assert time.monotonic() < deadline, "the queue's depth never reached 2"
        time.sleep(0.2)
    # Then both messages are counted in that queue (and the runs are canceled so nothing is left behind)
    for execution_id in executions:
        live_api.post(f"/executions/{execution_id}/cancel")


def _poll_worker(url: str, token: str, *, expected_runs: int, timeout: float = 10.0) -> dict:
    """The worker's samples once its processes have recorded `expected_runs` finishes (recorded just after
    the finish commits, so a fast test can scrape a moment before the last one)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url, token)
        total = sum(
            v for (name, _), v in samples.items() if name == "flowrunner_node_run_duration_seconds_count"
        )
        if total >= expected_runs or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


async def _scrape_while_subscribed(stack, user, execution_id: str, url: str, token: str) -> dict:
    async with websockets.connect(stack.ws_url, additional_headers=user.headers) as socket:
        await socket.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
        while json.loads(await asyncio.wait_for(socket.recv(), 10)).get("type") != "complete":
            pass
        return await asyncio.to_thread(scrape, url, token)
