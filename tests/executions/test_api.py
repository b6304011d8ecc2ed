"""The runs and executions REST API (no broker: published tasks are captured)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from executions import dispatch
from executions.models import Execution
from flows.services import flow_create, flow_delete

pytestmark = pytest.mark.usefixtures("sent")

FLOW = """
metadata: {name: api flow}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


@pytest.fixture
def flow(member):
    account, user = member
    return flow_create(account=account, user=user, content=FLOW)


def test_run_creates_a_queued_execution_and_enqueues_its_first_node(
    api, flow, sent, django_capture_on_commit_callbacks
):
    # When a flow is run with an input
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/flows/{flow.id}/run", {"input": {"x": 1}}, format="json")
    # Then 201 with the contract's fields, and the first node's task was published after commit
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"execution_id", "status", "flow_id", "flow_version"}
    assert body["status"] == "queued" and body["flow_id"] == flow.id and body["flow_version"] == "1"
    assert [task for task, _, _ in sent] == [dispatch.RUN_NODE]
    assert Execution.objects.get(id=body["execution_id"]).input == {"x": 1}


def run(api, flow, body, key):
    return api.post(f"/api/v1/flows/{flow.id}/run", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_run_with_the_same_idempotency_key_and_input_returns_the_first_execution(api, flow):
    # given a run started with a key
    first = run(api, flow, {"input": {"n": 1, "tags": ["a", "b"]}}, "abc")
    # when the same request is repeated (the keys of the input in another order)
    again = run(api, flow, {"input": {"tags": ["a", "b"], "n": 1}}, "abc")
    # then 200 with the first execution, and nothing new was started
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["execution_id"] == again.json()["execution_id"]
    assert Execution.objects.count() == 1


def test_run_with_a_reused_idempotency_key_and_another_input_is_422(api, flow):
    # given a run started with a key
    first = run(api, flow, {"input": {"n": 1}}, "abc")
    # when the key comes again with a different input (`true` is not `1` either)
    changed = [run(api, flow, body, "abc") for body in ({"input": {"n": 2}}, {"input": {"n": True}}, {})]
    # then 422 in the envelope, naming the first execution, and no run was started
    for response in changed:
        assert response.status_code == 422, response.content
        error = response.json()["error"]
        assert error["code"] == "idempotency_key_reused" and "different input" in error["message"]
        assert error["details"] == {"execution_id": first.json()["execution_id"]}
    assert Execution.objects.count() == 1


def test_run_idempotency_key_is_scoped_to_the_flow(api, member, flow):
    # given a run of one flow with a key, and a second flow of the same account
    account, user = member
    second = flow_create(account=account, user=user, content=FLOW.replace("api flow", "second flow"))
    first = run(api, flow, {"input": {"n": 1}}, "order-42")
    # when the second flow is run with the same key and input
    other = run(api, second, {"input": {"n": 1}}, "order-42")
    # then it gets an execution of its own, of its own flow
    assert (first.status_code, other.status_code) == (201, 201)
    assert other.json()["execution_id"] != first.json()["execution_id"]
    assert other.json()["flow_id"] == second.id


def test_run_idempotency_key_of_a_deleted_flow_does_not_answer_for_another(api, member, flow):
    # given a run with a key of a flow that was then deleted
    account, user = member
    run(api, flow, {"input": {}}, "k")
    flow_delete(flow=flow)
    replacement = flow_create(account=account, user=user, content=FLOW)
    # when another flow is run with the same key
    response = run(api, replacement, {"input": {}}, "k")
    # then a new execution of that flow starts, not the deleted flow's
    assert response.status_code == 201 and response.json()["flow_id"] == replacement.id


def test_run_idempotency_key_expires_after_the_ttl(api, flow, settings):
    # given a run with a key, older than FLOWRUNNER_IDEMPOTENCY_TTL
    settings.FLOWRUNNER_IDEMPOTENCY_TTL = 3600
    first = run(api, flow, {"input": {"n": 1}}, "abc")
    Execution.objects.filter(id=first.json()["execution_id"]).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    # when the key is sent again, even with another input
    again = run(api, flow, {"input": {"n": 2}}, "abc")
    # then a new execution starts, and the key now answers for it
    assert again.status_code == 201 and again.json()["execution_id"] != first.json()["execution_id"]
    assert run(api, flow, {"input": {"n": 2}}, "abc").json()["execution_id"] == again.json()["execution_id"]


@pytest.mark.parametrize("payload", [{"input": [1, 2]}, {"input": "text"}, {"input": 3}, {"inputs": {}}])
def test_run_rejects_input_that_is_not_an_object_and_unknown_fields(api, flow, payload):
    response = api.post(f"/api/v1/flows/{flow.id}/run", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert Execution.objects.count() == 0


def test_run_of_a_deleted_or_foreign_flow_is_not_found(api, other_api, flow):
    assert other_api.post(f"/api/v1/flows/{flow.id}/run", {}, format="json").status_code == 404
    flow_delete(flow=flow)
    assert api.post(f"/api/v1/flows/{flow.id}/run", {}, format="json").status_code == 404
    assert Execution.objects.count() == 0


def _run(api, flow, **input):
    return api.post(f"/api/v1/flows/{flow.id}/run", {"input": input}, format="json").json()["execution_id"]


def test_execution_detail_is_the_execution_status_shape(api, flow):
    execution_id = _run(api, flow, x=1)
    body = api.get(f"/api/v1/executions/{execution_id}").json()
    assert set(body) == {
        "id",
        "flow_id",
        "flow_version",
        "status",
        "progress",
        "current_node",
        "error",
        "input",
        "trigger",
        "results",
        "start_time",
        "end_time",
        "created_at",
        "waiting_reason",
    }
    assert body["status"] == "queued" and body["progress"] == 0 and body["end_time"] is None
    assert body["waiting_reason"] is None


def test_execution_list_is_paginated_and_filtered(api, flow):
    ids = [_run(api, flow, n=n) for n in range(3)]
    body = api.get("/api/v1/executions", {"limit": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]
    assert {e["id"] for e in api.get("/api/v1/executions", {"flow_id": flow.id}).json()["results"]} == set(
        ids
    )
    assert api.get("/api/v1/executions", {"status": "completed"}).json()["count"] == 0
    assert api.get("/api/v1/executions", {"status": "bogus"}).status_code == 400


def test_executions_of_another_account_are_not_found_and_not_listed(api, other_api, flow):
    execution_id = _run(api, flow)
    for path in ("", "/logs", "/nodes"):
        assert other_api.get(f"/api/v1/executions/{execution_id}{path}").status_code == 404
    assert other_api.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 404
    assert other_api.post(f"/api/v1/executions/{execution_id}/retry", {}, format="json").status_code == 404
    assert other_api.delete(f"/api/v1/executions/{execution_id}").status_code == 404
    assert other_api.get("/api/v1/executions").json()["count"] == 0
    assert Execution.objects.get(id=execution_id).status == "queued"


@pytest.mark.parametrize("bad", ["not-a-uuid", "../../etc/passwd", str(uuid.uuid4())])
def test_execution_unknown_or_malformed_id_is_not_found(api, bad):
    response = api.get(f"/api/v1/executions/{bad}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_logs_since_returns_only_later_events_in_order(api, flow):
    execution_id = _run(api, flow)
    rows = api.get(f"/api/v1/executions/{execution_id}/logs").json()
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert set(rows[0]) == {"seq", "timestamp", "node_id", "level", "message", "data"}
    later = api.get(f"/api/v1/executions/{execution_id}/logs", {"since": 1}).json()
    assert [r["seq"] for r in later] == [r["seq"] for r in rows[1:]]
    assert api.get(f"/api/v1/executions/{execution_id}/logs", {"since": "x"}).status_code == 400


def test_nodes_lists_one_row_per_attempt(api, flow):
    execution_id = _run(api, flow)
    rows = api.get(f"/api/v1/executions/{execution_id}/nodes").json()
    assert [(r["node_id"], r["attempt"], r["status"]) for r in rows] == [("a", 1, "queued")]
    assert set(rows[0]) == {
        "node_id",
        "batch_index",
        "attempt",
        "status",
        "action",
        "error",
        "queued_at",
        "started_at",
        "finished_at",
        "worker",
    }


def test_cancel_then_cancel_again_conflicts_and_delete_cancels(api, flow):
    execution_id = _run(api, flow)
    response = api.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "canceled"
    assert api.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 409
    other = _run(api, flow)
    assert api.delete(f"/api/v1/executions/{other}").status_code == 204
    assert Execution.objects.get(id=other).status == "canceled"


def test_retry_of_an_unfinished_execution_conflicts_and_of_a_canceled_one_starts_a_linked_run(api, flow):
    execution_id = _run(api, flow)
    assert api.post(f"/api/v1/executions/{execution_id}/retry", {}, format="json").status_code == 409
    api.post(f"/api/v1/executions/{execution_id}/cancel")
    response = api.post(f"/api/v1/executions/{execution_id}/retry", {"version": "pinned"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["retry_of"] == execution_id
    assert Execution.objects.get(id=response.json()["execution_id"]).retry_of_id == uuid.UUID(execution_id)
    assert api.get(f"/api/v1/executions/{response.json()['execution_id']}").json()["trigger"] == {
        "type": "retry",
        "retry_of": execution_id,
    }
    assert (
        api.post(f"/api/v1/executions/{execution_id}/retry", {"version": "x"}, format="json").status_code
        == 400
    )


def test_execution_trigger_is_recorded_and_filters_by_schedule(api, flow):
    # Given a run from the API and one recorded as a schedule's firing
    from executions.services import execution_start

    api_run = _run(api, flow)
    schedule_id = str(uuid.uuid4())
    fired, _ = execution_start(
        account=flow.account,
        flow=flow,
        trigger={
            "type": "schedule",
            "schedule_id": schedule_id,
            "scheduled_for": "2026-01-01T00:00:00+00:00",
        },
    )
    # When the executions are read and filtered by the schedule
    detail = api.get(f"/api/v1/executions/{api_run}").json()
    filtered = api.get("/api/v1/executions", {"schedule_id": schedule_id}).json()["results"]
    bad = api.get("/api/v1/executions", {"schedule_id": "nope"})
    # Then each says what started it, and the filter keeps the schedule's only
    assert detail["trigger"] == {"type": "api"}
    assert [row["id"] for row in filtered] == [str(fired.id)]
    assert filtered[0]["trigger"]["schedule_id"] == schedule_id
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["path"] == "schedule_id"
