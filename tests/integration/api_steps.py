"""Small steps integration tests take through the public HTTP API: upload, run, wait, read node runs."""

from __future__ import annotations

import time
from typing import Any

import httpx

TERMINAL = {"completed", "failed", "canceled"}


def create_flow(api: httpx.Client, content: str) -> str:
    response = api.post("/flows", json={"content": content})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def start_run(api: httpx.Client, flow_id: str, input: dict[str, Any] | None = None, **headers: str) -> str:
    response = api.post(f"/flows/{flow_id}/run", json={"input": input or {}}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["execution_id"]


def wait_for(
    api: httpx.Client, execution_id: str, *, timeout: float = 60.0, statuses: set[str] = TERMINAL
) -> dict[str, Any]:
    """Poll the ExecutionStatus until its status is one of `statuses`; fail with the last one seen."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/executions/{execution_id}")
        assert response.status_code == 200, response.text
        last = response.json()
        if last["status"] in statuses:
            return last
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} did not reach {statuses} in {timeout}s: {last}")


def run_to_end(
    api: httpx.Client, content: str, input: dict[str, Any] | None = None, timeout: float = 60.0
) -> tuple[str, dict[str, Any]]:
    flow_id = create_flow(api, content)
    execution_id = start_run(api, flow_id, input)
    return execution_id, wait_for(api, execution_id, timeout=timeout)


def node_runs(api: httpx.Client, execution_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/executions/{execution_id}/nodes")
    assert response.status_code == 200, response.text
    return response.json()


def path_taken(api: httpx.Client, execution_id: str) -> list[str]:
    """Node ids of the non-batch runs that succeeded, in start order (the route through the graph)."""
    return [
        run["node_id"]
        for run in node_runs(api, execution_id)
        if run["batch_index"] is None and run["status"] == "succeeded"
    ]


def logs(api: httpx.Client, execution_id: str, since: int = 0) -> list[dict[str, Any]]:
    response = api.get(f"/executions/{execution_id}/logs", params={"since": since})
    assert response.status_code == 200, response.text
    return response.json()


def set_secret(api: httpx.Client, key: str, value: str) -> None:
    response = api.put(f"/accounts/me/secrets/{key}", json={"value": value})
    assert response.status_code in (200, 201), response.text
