"""Admission: a flow's concurrency and the account's bound keep extra executions queued, FIFO per flow."""

from __future__ import annotations

import pytest

from executions import admission
from executions.models import Execution, ExecutionStatus, NodeRun
from executions.services import execution_cancel, execution_start
from flows.services import flow_create

pytestmark = pytest.mark.usefixtures("sent")

BOUNDED = """
metadata: {name: bounded, concurrency: 2}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""
FREE = """
metadata: {name: free}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


@pytest.fixture
def bounded(member):
    account, user = member
    return flow_create(account=account, user=user, content=BOUNDED)


@pytest.fixture
def free(member):
    account, user = member
    return flow_create(account=account, user=user, content=FREE)


def start(flow, capture, **kwargs):
    with capture(execute=True):
        execution, _ = execution_start(account=flow.account, flow=flow, **kwargs)
    execution.refresh_from_db()
    return execution


def started(execution: Execution) -> bool:
    return NodeRun.objects.filter(execution=execution).exists()


def test_admission_keeps_runs_beyond_the_flow_bound_queued_with_a_reason(
    api, bounded, sent, django_capture_on_commit_callbacks
):
    # given a flow with concurrency 2
    # when it is run three times
    runs = [start(bounded, django_capture_on_commit_callbacks) for _ in range(3)]
    # then two hold a slot (a node run each, enqueued) and the third waits, saying why, with no node run
    assert [started(run) for run in runs] == [True, True, False]
    assert len(sent) == 2
    assert [run.waiting_reason for run in runs] == ["", "", "flow_concurrency"]
    body = api.get(f"/api/v1/executions/{runs[2].id}").json()
    assert body["status"] == "queued" and body["waiting_reason"] == "flow_concurrency"
    assert api.get(f"/api/v1/executions/{runs[0].id}").json()["waiting_reason"] is None


def test_admission_starts_the_oldest_waiting_run_when_a_slot_frees(
    bounded, sent, django_capture_on_commit_callbacks
):
    # given two runs holding the slots and two waiting
    runs = [start(bounded, django_capture_on_commit_callbacks) for _ in range(4)]
    # when a running one is canceled
    with django_capture_on_commit_callbacks(execute=True):
        execution_cancel(execution=runs[0])
    # then the oldest waiting one starts (FIFO), the newest still waits
    for run in runs:
        run.refresh_from_db()
    assert runs[0].status == ExecutionStatus.CANCELED
    assert [started(run) for run in runs[1:]] == [True, True, False]
    assert runs[2].waiting_reason == "" and runs[3].waiting_reason == "flow_concurrency"
    assert len(sent) == 3
    # and its first node run is step 1 of the flow's start node, with a status event saying it no longer waits
    (node_run,) = NodeRun.objects.filter(execution=runs[2])
    assert (node_run.node_id, node_run.step, node_run.status) == ("a", 1, "queued")
    statuses = [e.payload["status"] for e in runs[2].events.filter(type="status").order_by("seq")]
    assert [s["waiting_reason"] for s in statuses] == ["flow_concurrency", None]


def test_admission_canceling_a_waiting_run_frees_nothing_and_the_next_keeps_its_place(
    bounded, sent, django_capture_on_commit_callbacks
):
    # given two runs holding the slots and two waiting
    runs = [start(bounded, django_capture_on_commit_callbacks) for _ in range(4)]
    # when the first waiting one is canceled
    with django_capture_on_commit_callbacks(execute=True):
        execution_cancel(execution=runs[2])
    # then nothing new starts; when a running one ends, the remaining waiting one starts
    assert not started(runs[3])
    with django_capture_on_commit_callbacks(execute=True):
        execution_cancel(execution=runs[1])
    assert started(runs[3])
    assert len(sent) == 3


def test_admission_new_run_waits_behind_the_flows_line_even_with_a_free_slot(
    bounded, sent, django_capture_on_commit_callbacks
):
    # given a waiting run and a slot freed without an admission yet (its process died after the commit)
    runs = [start(bounded, django_capture_on_commit_callbacks) for _ in range(3)]
    Execution.objects.filter(id=runs[0].id).update(status=ExecutionStatus.FAILED)
    # when a new run comes
    newest = start(bounded, django_capture_on_commit_callbacks)
    # then it queues behind the waiting one; the sweep then starts the older one, not the newer
    assert newest.waiting_reason == "flow_concurrency" and not started(newest)
    with django_capture_on_commit_callbacks(execute=True):
        assert admission.admit_all() == 1
    assert started(runs[2]) and not started(newest)


def test_admission_account_bound_spans_flows(
    settings, bounded, free, sent, django_capture_on_commit_callbacks
):
    # given an account bound of 2
    settings.FLOWRUNNER_ACCOUNT_MAX_RUNNING = 2
    # when a bounded flow and an unbounded one run
    first = start(free, django_capture_on_commit_callbacks)
    second = start(bounded, django_capture_on_commit_callbacks)
    third = start(free, django_capture_on_commit_callbacks)
    # then the third waits for the account
    assert (started(first), started(second), started(third)) == (True, True, False)
    assert third.waiting_reason == "account_concurrency"
    # when a run of the other flow ends, the waiting one of this flow starts
    with django_capture_on_commit_callbacks(execute=True):
        execution_cancel(execution=second)
    assert started(third)


def test_admission_does_not_cross_accounts(
    settings, member, other_member, bounded, sent, django_capture_on_commit_callbacks
):
    # given an account at its bound
    settings.FLOWRUNNER_ACCOUNT_MAX_RUNNING = 1
    start(bounded, django_capture_on_commit_callbacks)
    account, user = other_member
    theirs = flow_create(account=account, user=user, content=FREE)
    # when another account runs a flow / then it starts
    assert started(start(theirs, django_capture_on_commit_callbacks))


def test_admission_costs_nothing_without_a_bound(free, django_assert_num_queries):
    # given a flow without concurrency and no account bound / when a new run asks / then no query is made
    with django_assert_num_queries(0):
        assert admission.reason_to_wait(account_id=free.account_id, flow_id=free.id, concurrency=None) == ""


def test_admission_canceled_waiting_run_shows_no_reason(api, bounded, django_capture_on_commit_callbacks):
    # given a waiting run
    runs = [start(bounded, django_capture_on_commit_callbacks) for _ in range(3)]
    # when it is canceled before it started
    with django_capture_on_commit_callbacks(execute=True):
        execution_cancel(execution=runs[2])
    # then it is canceled, never ran a node, and its status no longer says it waits
    body = api.get(f"/api/v1/executions/{runs[2].id}").json()
    assert body["status"] == "canceled" and body["waiting_reason"] is None
    assert NodeRun.objects.filter(execution=runs[2]).count() == 0
