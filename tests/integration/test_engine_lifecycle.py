"""Cancel, idempotency, waits, secrets and their redaction, the store, and the reaper re-driving a lost task."""

from __future__ import annotations

import time

import redis

from tests.integration.api_steps import (
    create_flow,
    logs,
    node_runs,
    run_to_end,
    set_secret,
    start_run,
    wait_for,
)

WAIT_THEN_WORK = """
metadata: {name: wait then work}
nodes:
  pause:
    type: wait
    params: {duration: 30s}
    next: {success: work}
  work: {type: transform, params: {script: "return {worked: true}"}}
"""


def test_cancel_during_a_wait_stops_the_execution_and_nothing_runs_after(live_api):
    # Given an execution waiting 30s before its next node
    flow_id = create_flow(live_api, WAIT_THEN_WORK)
    execution_id = start_run(live_api, flow_id)
    wait_for(live_api, execution_id, statuses={"running"})
    # When it is canceled
    response = live_api.post(f"/executions/{execution_id}/cancel")
    assert response.status_code == 202, response.text
    # Then it is canceled at once, its open node run too, and a second cancel is a conflict
    status = wait_for(live_api, execution_id)
    assert status["status"] == "canceled"
    assert status["progress"] == 100
    assert live_api.post(f"/executions/{execution_id}/cancel").status_code == 409
    time.sleep(1)
    runs = node_runs(live_api, execution_id)
    assert [r["node_id"] for r in runs] == ["pause"]
    assert runs[0]["status"] == "canceled"


def test_delete_cancels_an_execution(live_api):
    flow_id = create_flow(live_api, WAIT_THEN_WORK)
    execution_id = start_run(live_api, flow_id)
    assert live_api.delete(f"/executions/{execution_id}").status_code == 204
    assert wait_for(live_api, execution_id)["status"] == "canceled"


SHORT_WAIT = """
metadata: {name: short wait}
nodes:
  pause: {type: delay, params: {duration: 1s}, next: {success: work}}
  work: {type: transform, params: {script: "return {worked: true}"}}
"""


def test_wait_is_a_countdown_and_the_flow_continues_after_it(live_api):
    execution_id, status = run_to_end(live_api, SHORT_WAIT)
    assert status["status"] == "completed", status
    pause, work = node_runs(live_api, execution_id)
    from datetime import datetime

    waited = datetime.fromisoformat(pause["finished_at"]) - datetime.fromisoformat(pause["started_at"])
    assert waited.total_seconds() >= 1.0


ECHO = """
metadata: {name: echo}
nodes:
  echo: {type: transform, params: {script: "return {echo: input.n}"}}
"""


def test_idempotency_key_returns_the_same_execution(live_api):
    flow_id = create_flow(live_api, ECHO)
    first = live_api.post(
        f"/flows/{flow_id}/run", json={"input": {"n": 1}}, headers={"Idempotency-Key": "k-1"}
    )
    again = live_api.post(
        f"/flows/{flow_id}/run", json={"input": {"n": 1}}, headers={"Idempotency-Key": "k-1"}
    )
    changed = live_api.post(
        f"/flows/{flow_id}/run", json={"input": {"n": 2}}, headers={"Idempotency-Key": "k-1"}
    )
    other = live_api.post(
        f"/flows/{flow_id}/run", json={"input": {"n": 3}}, headers={"Idempotency-Key": "k-2"}
    )
    assert first.status_code == 201 and again.status_code == 200 and other.status_code == 201
    assert changed.status_code == 422 and changed.json()["error"]["code"] == "idempotency_key_reused"
    assert first.json()["execution_id"] == again.json()["execution_id"] != other.json()["execution_id"]
    assert wait_for(live_api, first.json()["execution_id"])["results"] == {"n": 1, "echo": 1}


SECRETS = """
metadata: {name: secrets}
nodes:
  use:
    type: transform
    params:
      script: |
        console.log("calling with " + secrets.API_KEY);
        return {header: "Bearer ${secrets.API_KEY}".length > 0, key_tail: secrets.API_KEY.slice(-4),
                leaked: secrets.API_KEY};
    next: {success: templated}
  templated:
    type: log
    params: {message: "token is ${secrets.API_KEY}"}
"""


def test_secrets_reach_scripts_and_templates_but_are_redacted_everywhere(live_api):
    # Given an account secret used in a script, a console.log and a templated log message
    secret = "sk-live-0123456789abcdef"
    set_secret(live_api, "API_KEY", secret)
    execution_id, status = run_to_end(live_api, SECRETS)
    # Then the flow used it
    assert status["status"] == "completed", status
    assert status["results"]["key_tail"] == "cdef"
    # And no API response shows the value: results, logs, node runs
    assert status["results"]["leaked"] == "***"
    lines = logs(live_api, execution_id)
    text = repr(lines) + live_api.get(f"/executions/{execution_id}").text
    text += live_api.get(f"/executions/{execution_id}/nodes").text
    assert secret not in text
    assert any("calling with ***" in line["message"] for line in lines)
    assert any("token is ***" in line["message"] for line in lines)


STORE = """
metadata: {name: store}
nodes:
  bump: {type: store, params: {operation: increment, key: visits}, next: {success: read}}
  read: {type: store, params: {operation: get, key: visits, output_key: visits}}
"""


def test_store_is_account_scoped_and_persistent(live_api, make_live_user, live_stack):
    _, first = run_to_end(live_api, STORE)
    _, second = run_to_end(live_api, STORE)
    assert first["results"]["visits"] == 1
    assert second["results"]["visits"] == 2
    other = make_live_user()
    with live_stack.client(auth=other.auth) as other_api:
        _, theirs = run_to_end(other_api, STORE)
    assert theirs["results"]["visits"] == 1


ORPHAN = """
metadata: {name: orphan}
nodes:
  lost:
    type: transform
    queue: orphanage
    params: {script: "return {found: true}"}
"""


def test_reaper_re_enqueues_a_task_the_broker_lost(live_stack, live_api):
    # Given a node routed to a queue no worker consumes yet, and its message dropped from Redis
    flow_id = create_flow(live_api, ORPHAN)
    execution_id = start_run(live_api, flow_id)
    client = redis.Redis.from_url(live_stack.env["FLOWRUNNER_REDIS_URL"])
    deadline = time.monotonic() + 10
    while not client.llen("orphanage") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.delete("orphanage") == 1
    # When a worker for that queue starts
    live_stack.start_worker("adopter", queues=["orphanage"])
    try:
        # Then the reaper (beat) re-sends the task from PostgreSQL and the execution completes
        status = wait_for(live_api, execution_id, timeout=60)
    finally:
        live_stack.stop_worker("adopter")
    assert status["status"] == "completed", status
    assert status["results"] == {"found": True}
