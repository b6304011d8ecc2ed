"""executions.transitions: compare-and-swap status changes, each recording an event with the execution's next seq."""

from __future__ import annotations

import pytest
from django.db import transaction

from executions.events import locked_execution_work
from executions.models import Execution, ExecutionEvent, NodeRun
from executions.transitions import (
    TransitionError,
    execution_transition,
    node_run_create,
    node_run_transition,
    node_runs_cancel,
    record_log,
)
from tests.executions.steps import FLOW as ONE_NODE
from tests.workers.steps import start_execution

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


@pytest.fixture
def execution(member) -> Execution:
    """A queued execution started through the services (its first events already stored)."""
    return Execution.objects.get(id=start_execution(member, ONE_NODE).id)


def events_of(execution: Execution) -> list[ExecutionEvent]:
    return list(ExecutionEvent.objects.filter(execution=execution).order_by("seq"))


@pytest.mark.django_db(transaction=True)
def test_transitions_refuse_to_run_outside_a_transaction(execution):
    # given no atomic block (the test itself runs in autocommit)
    # when a transition is asked / then it is refused and nothing changes
    with pytest.raises(TransitionError):
        execution_transition(execution, to="running", expected=("queued",))
    assert Execution.objects.get(id=execution.id).status == "queued"


def test_transitions_execution_cas_from_a_wrong_status_changes_nothing(execution):
    # given a queued execution and its stored events
    before = events_of(execution)
    # when it is asked to complete from running (which it is not)
    with transaction.atomic():
        moved = execution_transition(execution, to="completed", expected=("running",))
    # then the swap is refused: same status, no event, the instance untouched
    assert moved is False
    assert Execution.objects.get(id=execution.id).status == "queued" and execution.status == "queued"
    assert events_of(execution) == before


def test_transitions_execution_cas_records_a_status_event_with_the_next_seq(execution):
    # given a queued execution whose last event has seq n
    last = Execution.objects.get(id=execution.id).last_event_seq
    # when it moves to running
    with transaction.atomic():
        moved = execution_transition(execution, to="running", expected=("queued",))
    # then the row moved, and one `status` event with seq n + 1 says so
    assert moved is True
    assert Execution.objects.get(id=execution.id).status == "running"
    event = events_of(execution)[-1]
    assert (event.seq, event.type) == (last + 1, "status")
    assert event.payload["status"]["status"] == "running" and event.payload["seq"] == last + 1
    assert Execution.objects.get(id=execution.id).last_event_seq == last + 1


def test_transitions_a_terminal_status_sets_finished_at_and_full_progress(execution):
    # given a running execution
    with transaction.atomic():
        execution_transition(execution, to="running", expected=("queued",))
    # when it is canceled
    with transaction.atomic():
        execution_transition(execution, to="canceled", expected=("queued", "running"))
    # then it is finished, at 100 %
    stored = Execution.objects.get(id=execution.id)
    assert stored.status == "canceled" and stored.finished_at is not None and stored.progress == 100.0


def test_transitions_inside_locked_work_swap_in_memory_and_write_at_the_end(execution):
    # given a transaction holding the execution's row
    last = Execution.objects.get(id=execution.id).last_event_seq
    with transaction.atomic():
        locked = Execution.objects.select_for_update().get(id=execution.id)
        with locked_execution_work(locked):
            # when a wrong swap, then a right one, are asked
            refused = execution_transition(locked, to="completed", expected=("running",))
            moved = execution_transition(locked, to="running", expected=("queued",))
            # then nothing is written before the block ends
            assert Execution.objects.get(id=execution.id).status == "queued"
    # and at its end the row and exactly one event (the right swap's) are written, with the next seq
    assert (refused, moved) == (False, True)
    assert Execution.objects.get(id=execution.id).status == "running"
    assert [(e.seq, e.type) for e in events_of(execution)][-1] == (last + 1, "status")
    assert Execution.objects.get(id=execution.id).last_event_seq == last + 1


def test_transitions_node_run_cas_refuses_a_wrong_status_and_records_a_node_event_otherwise(execution):
    # given a queued node run, created with its `node` event
    with transaction.atomic():
        run = node_run_create(execution=execution, node_id="a", task_id="t-a")
    created = events_of(execution)[-1]
    assert (created.type, created.payload["node"]["status"]) == ("node", "queued")
    # when it is asked to succeed from running (it is queued), then to start from queued
    with transaction.atomic():
        refused = node_run_transition(
            run, to="succeeded", expected=("running",), account_id=execution.account_id
        )
        moved = node_run_transition(run, to="running", expected=("queued",), account_id=execution.account_id)
    # then only the second swap happened, with one more `node` event, the next seq
    assert (refused, moved) == (False, True)
    assert NodeRun.objects.get(id=run.id).status == "running"
    last = events_of(execution)[-1]
    assert (last.seq, last.type, last.node_id) == (created.seq + 1, "node", "a")
    assert last.payload["node"] == {
        "node_id": "a",
        "batch_index": None,
        "attempt": run.attempt,
        "status": "running",
        "action": None,
        "error": None,
    }


def test_transitions_cancel_moves_only_the_runs_that_have_not_ended(execution):
    # given a queued run and a succeeded one
    with transaction.atomic():
        queued = node_run_create(execution=execution, node_id="a")
        done = node_run_create(execution=execution, node_id="b", status="succeeded")
        # when both are canceled
        moved = node_runs_cancel([queued, done], account_id=execution.account_id, error="stopped")
    # then only the queued one moved, with the error, and the succeeded one kept its status
    assert [run.id for run in moved] == [queued.id]
    assert NodeRun.objects.get(id=queued.id).status == "canceled"
    assert NodeRun.objects.get(id=queued.id).error == "stopped"
    assert NodeRun.objects.get(id=done.id).status == "succeeded"


def test_transitions_record_log_stores_a_log_event(execution):
    # when a log line is recorded
    with transaction.atomic():
        record_log(
            execution_id=execution.id,
            account_id=execution.account_id,
            node_id="a",
            level="warn",
            message="careful",
            data={"n": 1},
        )
    # then it is the next event, of type `log`, carrying the line
    event = events_of(execution)[-1]
    assert event.type == "log"
    line = event.payload["log"]
    assert (line["node_id"], line["level"], line["message"], line["data"]) == (
        "a",
        "warn",
        "careful",
        {"n": 1},
    )
