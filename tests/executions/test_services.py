"""executions.services.execution_start: one statement writes the execution, its first run and their events."""

from __future__ import annotations

import contextlib

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.services import secret_set
from executions import idempotency
from executions.models import Execution, ExecutionEvent, NodeRun
from executions.services import execution_start
from executions.status import execution_status
from flows.selectors import flow_version_spec
from flows.services import flow_create
from tests.executions.steps import FLOW as ONE_NODE

BOUNDED = """
metadata: {name: b, concurrency: 1}
nodes:
  a: {type: transform, params: {script: "return 1"}}
"""


@pytest.fixture
def flow(member):
    account, user = member
    created = flow_create(account=account, user=user, content=ONE_NODE)
    flow_version_spec(created.current_version)  # parsed once, as a running server has it cached
    return created


def _start(member, flow, **kwargs):
    account, user = member
    return execution_start(account=account, flow=flow, user=user, **kwargs)


@pytest.mark.django_db(transaction=True)
def test_services_start_writes_the_execution_its_run_and_events_in_one_statement(member, flow, sent):
    # Given a flow without a concurrency bound, and a caller in autocommit (as the API's views are)
    # When an execution starts
    with CaptureQueriesContext(connection) as queries:
        execution, created = _start(member, flow, input={"n": 1})
    # Then one statement was sent: no BEGIN, COMMIT or ORM INSERTs of its own
    assert created is True
    assert [query["sql"].split("(")[0] for query in queries.captured_queries] == ["SELECT flowrunner_start"]
    # And the rows are those of a queued execution with a queued first run, the instances marked saved
    stored = Execution.objects.get(id=execution.id)
    run = NodeRun.objects.get(execution=stored)
    assert (stored.status, stored.input, stored.data, stored.steps, stored.last_event_seq) == (
        "queued",
        {"n": 1},
        {"n": 1},
        1,
        2,
    )
    assert stored.created_at == execution.created_at and stored.trigger == {"type": "api"}
    assert (run.node_id, run.status, run.attempt, run.step, run.queued_at is not None) == (
        "a",
        "queued",
        1,
        1,
        True,
    )
    assert execution._state.adding is False and sent[0][1] == run.id
    # And its events are a status (the ExecutionStatus without input) and the run's node event, seq 1 and 2
    events = list(ExecutionEvent.objects.filter(execution=stored).order_by("seq"))
    assert [(event.seq, event.type, event.node_id) for event in events] == [
        (1, "status", ""),
        (2, "node", "a"),
    ]
    status = execution_status(stored, with_input=False)
    assert {key: events[0].payload["status"][key] for key in status if key != "created_at"} == {
        key: value for key, value in status.items() if key != "created_at"
    }
    assert events[1].payload["node"] == {
        "node_id": "a",
        "batch_index": None,
        "attempt": 1,
        "status": "queued",
        "action": None,
        "error": None,
    }


@pytest.mark.django_db(transaction=True)
def test_services_start_broadcasts_its_frames_before_the_first_task_is_sent(member, flow, monkeypatch):
    # Given broadcasts and task sends recorded in one list
    from executions import dispatch, transitions

    order: list[str] = []
    monkeypatch.setattr(
        transitions,
        "broadcast_frames",
        lambda frames, **kw: order.extend(f"frame:{f['type']}" for f in frames),
    )
    monkeypatch.setattr(dispatch, "send_now", lambda task, run_id, **kw: order.append(f"task:{task}"))
    # When an execution starts
    _start(member, flow)
    # Then its two frames went out before its first node's task
    assert order == ["frame:status", "frame:node", "task:flowrunner.run_node"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outer_transaction", [False, True])
def test_services_start_answers_a_racing_idempotency_key_with_the_first_execution(
    member, flow, sent, monkeypatch, outer_transaction
):
    # Given a first execution with a key, and a second request whose look-up ran before the first committed
    first, _ = _start(member, flow, idempotency_key="k-1")
    looked_up = idempotency.execution_for_key
    calls: list[str] = []

    def racing(**kwargs):
        calls.append(kwargs["digest"])
        return None if len(calls) == 1 else looked_up(**kwargs)

    monkeypatch.setattr(idempotency, "execution_for_key", racing)
    # When the second starts with the same key (inside a caller's transaction, or not)
    with transaction.atomic() if outer_transaction else contextlib.nullcontext():
        second, created = _start(member, flow, idempotency_key="k-1")
        # Then the insert's unique violation is answered with the first execution, and a caller's transaction
        # is still usable
        assert Execution.objects.filter(flow=flow).count() == 1
    assert (second.id, created) == (first.id, False)
    assert NodeRun.objects.filter(execution__flow=flow).count() == 1 and len(sent) == 1 and len(calls) == 2


@pytest.mark.django_db(transaction=True)
def test_services_start_of_a_bounded_flow_takes_the_admission_lock_in_a_transaction(member, sent):
    # Given a flow with concurrency 1 whose one slot is taken
    account, user = member
    bounded = flow_create(account=account, user=user, content=BOUNDED)
    running, _ = execution_start(account=account, flow=bounded, user=user)
    # When a second execution starts
    with CaptureQueriesContext(connection) as queries:
        waiting, _ = execution_start(account=account, flow=bounded, user=user)
    # Then the lock, the count and the insert shared one transaction, and the second waits without a run
    statements = [query["sql"].split("(")[0].strip() for query in queries.captured_queries]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    assert "SELECT pg_advisory_xact_lock" in statements and "SELECT flowrunner_start" in statements
    stored = Execution.objects.get(id=waiting.id)
    assert (stored.status, stored.waiting_reason, stored.last_event_seq) == ("queued", "flow_concurrency", 1)
    assert not NodeRun.objects.filter(execution=stored).exists() and len(sent) == 1
    event = ExecutionEvent.objects.get(execution=stored)
    assert event.payload["status"]["waiting_reason"] == "flow_concurrency"
    assert running.id != waiting.id


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_secret", [False, True])
def test_services_start_a_first_node_running_ahead_carries_whether_the_account_has_secrets(
    member, flow, sent, with_secret
):
    # Given an account with or without a secret, and a pure first node that runs ahead of its claim
    if with_secret:
        secret_set(account=member[0], key="API_KEY", value="s3cret-value")
    # When an execution starts
    execution, _ = _start(member, flow, input={"x": 1})
    # Then its task carries the document and the account's has_secrets, and the run holds the task's id
    options = sent[0][2]
    context = options["extra"]["context"]
    assert context["execution"]["has_secrets"] is with_secret and context["execution"]["data"] == {"x": 1}
    assert NodeRun.objects.get(execution_id=execution.id).task_id == options["task_id"] != ""
