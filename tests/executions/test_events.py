"""executions.events: events numbered per execution without gaps, their frames, and their broadcast after commit."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from executions import events
from executions.events import locked_execution_work, record_event
from executions.models import Execution, ExecutionEvent
from tests.executions.steps import FLOW as ONE_NODE
from tests.workers.steps import start_execution

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


@pytest.fixture
def broadcasts(monkeypatch) -> list[list[dict]]:
    """The frame batches events hands to the broadcast, captured."""
    sent: list[list[dict]] = []
    monkeypatch.setattr(events, "broadcast_frames", lambda frames, account_id, then=None: sent.append(frames))
    return sent


def seqs(execution: Execution) -> list[int]:
    return list(
        ExecutionEvent.objects.filter(execution=execution).order_by("seq").values_list("seq", flat=True)
    )


def test_events_are_numbered_per_execution_without_gaps(member):
    # given two executions
    first, second = start_execution(member, ONE_NODE), start_execution(member, ONE_NODE)
    base_first, base_second = len(seqs(first)), len(seqs(second))
    # when events are recorded for both, interleaved
    with transaction.atomic():
        for execution in (first, second, first, first, second):
            record_event(execution_id=execution.id, account_id=execution.account_id, type="log")
    # then each execution counts its own, from 1, with no gap, and its row remembers the last one
    assert seqs(first) == list(range(1, base_first + 4))
    assert seqs(second) == list(range(1, base_second + 3))
    assert Execution.objects.get(id=first.id).last_event_seq == base_first + 3


def test_events_refuse_an_execution_that_does_not_exist(member):
    # when an event is recorded for an unknown execution / then it is refused, nothing stored
    with pytest.raises(LookupError), transaction.atomic():
        record_event(execution_id=uuid.uuid4(), account_id=member[0].id, type="log")
    assert not ExecutionEvent.objects.exists()


def test_events_frame_carries_type_ids_seq_and_the_body(member):
    # given an execution
    execution = start_execution(member, ONE_NODE)
    # when an event with a node and a body, and one without a node, are recorded
    with transaction.atomic():
        record_event(
            execution_id=execution.id, account_id=execution.account_id, type="log", node_id="a", body={"x": 1}
        )
        record_event(execution_id=execution.id, account_id=execution.account_id, type="message")
    with_node, without = ExecutionEvent.objects.filter(execution=execution).order_by("-seq")[:2][::-1]
    # then the stored frame is the wire frame: type, execution id, seq, timestamp, node id only when given, the body
    assert set(with_node.payload) == {"type", "execution_id", "seq", "timestamp", "node_id", "x"}
    assert (with_node.payload["type"], with_node.payload["node_id"], with_node.payload["x"]) == (
        "log",
        "a",
        1,
    )
    assert (
        with_node.payload["execution_id"] == str(execution.id) and with_node.payload["seq"] == with_node.seq
    )
    assert "node_id" not in without.payload and without.seq == with_node.seq + 1


def test_events_are_broadcast_only_once_committed(member, broadcasts, django_capture_on_commit_callbacks):
    # given an execution
    execution = start_execution(member, ONE_NODE)
    # when an event is recorded and its transaction has not committed yet
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            record_event(execution_id=execution.id, account_id=execution.account_id, type="log")
            pending = list(broadcasts)
    # then nothing was broadcast before the commit, and its frame after it
    assert pending == []
    assert [[frame["type"] for frame in batch] for batch in broadcasts] == [["log"]]


def test_events_locked_work_writes_its_events_at_the_end_in_one_batch(
    member, broadcasts, django_capture_on_commit_callbacks
):
    # given an execution whose row the transaction holds
    execution = start_execution(member, ONE_NODE)
    base = Execution.objects.get(id=execution.id).last_event_seq
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        locked = Execution.objects.select_for_update().get(id=execution.id)
        with locked_execution_work(locked):
            # when three events are recorded, one of them in a nested block
            record_event(execution_id=execution.id, account_id=execution.account_id, type="log")
            with locked_execution_work(locked):
                record_event(execution_id=execution.id, account_id=execution.account_id, type="log")
            # then the nested block wrote nothing (the outer one flushes)
            assert seqs(execution)[-1] == base
            record_event(execution_id=execution.id, account_id=execution.account_id, type="message")
    # and at the end all three are stored with the next seqs, and broadcast together, in order
    assert seqs(execution)[-3:] == [base + 1, base + 2, base + 3]
    assert Execution.objects.get(id=execution.id).last_event_seq == base + 3
    assert [[frame["seq"] for frame in batch] for batch in broadcasts] == [[base + 1, base + 2, base + 3]]
