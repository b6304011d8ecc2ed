"""Re-run from failure: POST /executions/{id}/retry resumes at the failed node, pinned or on the current version."""

from __future__ import annotations

import pytest

from tests.integration.api_steps import create_flow, node_runs, set_secret, wait_for

pytestmark = pytest.mark.faults


def flow(version: str, third: str) -> str:
    return f"""
metadata: {{name: rerun, version: "{version}"}}
nodes:
  one: {{type: transform, params: {{script: "return {{one: Math.random()}}"}}, next: {{success: two}}}}
  two: {{type: transform, params: {{script: "return {{two: Math.random()}}"}}, next: {{success: three}}}}
  three:
    type: transform
    params:
      script: |
        {third}
    next: {{success: four}}
  four:
    type: transform
    params: {{script: "return {{total: results.one.one + results.two.two, by: input.three}}"}}
"""


# v1's third node fails while the account's secret BROKEN is "yes"; v2 fixes it.
V1 = flow("1.0.0", 'if (secrets.BROKEN === "yes") throw new Error("three is broken"); return {three: "v1"};')
V2 = flow("2.0.0", 'return {three: "v2"};')


def retry(api, execution_id: str, version: str | None = None) -> str:  # noqa: ANN001
    response = api.post(f"/executions/{execution_id}/retry", json={"version": version} if version else {})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["retry_of"] == execution_id, body
    return body["execution_id"]


def check_resumed(api, original: dict, execution_id: str, version: str, third: str) -> None:  # noqa: ANN001
    """Completed, linked, on `version`, starting at node three, with nodes one and two's outputs reused."""
    status = wait_for(api, execution_id, timeout=60)
    assert status["status"] == "completed", status
    assert status["flow_version"] == version
    assert [run["node_id"] for run in node_runs(api, execution_id)] == ["three", "four"]
    results = status["results"]
    assert (results["one"], results["two"]) == (original["one"], original["two"])  # not run again
    assert results["total"] == original["one"] + original["two"]  # `results` of nodes 1-2 carried over
    assert results["three"] == third and results["by"] == third


def test_retry_resumes_at_the_failed_node_pinned_or_current(live_api, live_db):
    from executions.models import Execution

    # Given an execution of v1 that failed at its third node
    set_secret(live_api, "BROKEN", "yes")
    flow_id = create_flow(live_api, V1)
    response = live_api.post(f"/flows/{flow_id}/run", json={"input": {}})
    failed_id = response.json()["execution_id"]
    failed = wait_for(live_api, failed_id)
    assert failed["status"] == "failed" and "three is broken" in failed["error"], failed
    assert [r["node_id"] for r in node_runs(live_api, failed_id)] == ["one", "two", "three"]
    document = Execution.objects.get(id=failed_id).data

    # When it is retried pinned while node three is still broken: v1 runs again from three, and fails again
    again = retry(live_api, failed_id)  # pinned is the default
    status = wait_for(live_api, again)
    assert status["status"] == "failed" and status["flow_version"] == "1.0.0", status
    assert [r["node_id"] for r in node_runs(live_api, again)] == ["three"]

    # When the flow is fixed (PUT: v2) and the failed execution retried on the current version
    response = live_api.put(f"/flows/{flow_id}", json={"content": V2})
    assert response.status_code == 200, response.text
    check_resumed(live_api, document, retry(live_api, failed_id, "current"), "2.0.0", "v2")

    # When the cause goes away and it is retried pinned: v1's node three now passes
    set_secret(live_api, "BROKEN", "no")
    check_resumed(live_api, document, retry(live_api, failed_id, "pinned"), "1.0.0", "v1")
    assert Execution.objects.filter(retry_of_id=failed_id).count() == 3
