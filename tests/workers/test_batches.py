"""Batch nodes driven in-process: parts created once, max_parallel as a bound, limits, constant-cost finishes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions import dispatch, transitions
from executions.models import Execution, ExecutionEvent, NodeRun
from executions.services import execution_cancel
from tests.workers.steps import start_execution
from workers import batches, engine
from workers.outcomes import RetryLater

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = """
metadata: {name: batch}
nodes:
  fan:
    type: parallel_batch
    params:
      items: "${input.numbers}"
      batch_size: 1
      max_parallel: "${input.lanes}"
      processor_script: "return {seen: input.items}"
    next: {success: done}
  done: {type: transform, params: {script: "return {count: input.seen.length}"}}
"""


@pytest.fixture
def launched(monkeypatch):
    """Chords and tasks the engine would publish, captured instead."""
    chords: list[tuple[int, list, int, list]] = []
    monkeypatch.setattr(
        batches,
        "_launch_chord",
        lambda parent_id, parts, lanes, node, contexts, **_: chords.append(
            (parent_id, parts, lanes, contexts)
        ),
    )
    tasks: list[tuple[str, int, dict]] = []
    monkeypatch.setattr(
        dispatch, "send_now", lambda task, run_id, **options: tasks.append((task, run_id, options))
    )
    return chords, tasks


def _start(member, input, content=BATCH):
    return start_execution(member, content, input)


def _run_parent(execution):
    parent = NodeRun.objects.get(execution=execution, node_id="fan", parent__isnull=True)
    engine.run_node(parent.id, task_id="parent-task", hostname="w@h")
    return NodeRun.objects.get(id=parent.id)


def test_batches_max_parallel_expression_is_rendered_and_bounds_the_claims(member, launched):
    chords, _ = launched
    # Given a batch node whose max_parallel is `${input.lanes}` = 2, over 5 items
    execution = _start(member, {"numbers": [1, 2, 3, 4, 5], "lanes": 2})
    # When the batch node starts
    parent = _run_parent(execution)
    # Then 5 parts exist and the chord has 2 lanes
    assert parent.parts_total == 5 and chords[0][2] == 2
    parts = list(NodeRun.objects.filter(parent=parent).order_by("batch_index"))
    # And with two parts claimed (running), a third claim is refused until one finishes
    for part in parts[:2]:
        assert isinstance(
            engine.runs.claim(part.id, task_id=part.task_id, hostname="w@h"), engine.runs.Claimed
        )
    refused = batches.run_part(parts[2].id, task_id=parts[2].task_id, hostname="w@h")
    assert isinstance(refused, RetryLater) and refused.node_run_id == parts[2].id
    assert NodeRun.objects.get(id=parts[2].id).status == "queued"


def test_batches_a_bad_max_parallel_fails_the_node_with_a_clear_error(member, launched):
    # Given max_parallel rendering to 0
    execution = _start(member, {"numbers": [1, 2], "lanes": 0})
    # When the batch node starts
    _run_parent(execution)
    # Then the node failed (not retried: the value will not change) with the reason
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert "max_parallel must be an integer of at least 1" in execution.error


def test_batches_more_parts_than_the_limit_fail_the_node_naming_it(member, launched, settings):
    settings.FLOWRUNNER_MAX_BATCHES = 3
    # Given 4 items in batches of 1, over a limit of 3 batches
    execution = _start(member, {"numbers": [1, 2, 3, 4], "lanes": 1})
    # When the batch node starts
    _run_parent(execution)
    # Then it failed naming the limit, and no part was created
    execution.refresh_from_db()
    assert execution.status == "failed" and "FLOWRUNNER_MAX_BATCHES (3)" in execution.error
    assert not NodeRun.objects.filter(execution=execution, parent__isnull=False).exists()


def test_batches_a_second_start_of_the_same_batch_node_creates_nothing(member, launched):
    # Given a batch node whose parts were created
    execution = _start(member, {"numbers": [1, 2, 3], "lanes": 3})
    parent = _run_parent(execution)
    # When the start is asked again (a redelivered task that got past its claim)
    again = transitions.batch_parts_create(
        node_run_id=parent.id, parts_json="[{}, {}]", lanes=1, item_count=2
    )
    # And when its task is redelivered with its own task id
    assert engine.run_node(parent.id, task_id="parent-task", hostname="w@h") is None
    # Then nothing was created: still the 3 parts of the first start
    assert again["outcome"] == "stale"
    assert NodeRun.objects.filter(parent=parent).count() == 3
    assert NodeRun.objects.get(id=parent.id).status == "running"


def _finish_statements(member, launched, items: int) -> int:
    execution = _start(member, {"numbers": list(range(items)), "lanes": items})
    parent = _run_parent(execution)
    parts = list(NodeRun.objects.filter(parent=parent).order_by("batch_index"))
    for part in parts[:-1]:
        batches.run_part(part.id, task_id=part.task_id, hostname="w@h")
    with CaptureQueriesContext(connection) as queries:
        batches.run_part(parts[-1].id, task_id=parts[-1].task_id, hostname="w@h")
    parent.refresh_from_db()
    assert parent.parts_done == items
    return len(queries.captured_queries)


def test_batches_a_part_finish_costs_the_same_whatever_the_number_of_parts(member, launched):
    # Given batch nodes of 3 and of 200 parts
    # When the last part of each runs
    small = _finish_statements(member, launched, 3)
    large = _finish_statements(member, launched, 200)
    # Then both took the same two statements (claim, finish): no read of the siblings
    assert small == large == 2


def test_batches_the_last_part_makes_the_join_due_and_the_join_wins_once(member, launched):
    _, tasks = launched
    # Given a batch node whose parts all ran
    execution = _start(member, {"numbers": [1, 2, 3], "lanes": 2})
    parent = _run_parent(execution)
    for part in NodeRun.objects.filter(parent=parent).order_by("batch_index"):
        batches.run_part(part.id, task_id=part.task_id, hostname="w@h")
    # When the join is called three times (chord callback, reaper, a duplicate)
    for _ in range(3):
        batches.join(parent.id)
    # Then the batch node succeeded once and the next node was queued once
    assert NodeRun.objects.get(id=parent.id).status == "succeeded"
    done = NodeRun.objects.get(execution=execution, node_id="done")
    assert [run_id for task, run_id, _ in tasks if task == dispatch.RUN_NODE].count(done.id) == 1
    assert Execution.objects.get(id=execution.id).data["seen"] == [1, 2, 3]


def _frames(execution, since: int) -> list[tuple[str, str | None]]:
    events = ExecutionEvent.objects.filter(execution=execution, seq__gt=since).order_by("seq")
    return [(e.type, (e.payload.get("node") or e.payload.get("status") or {}).get("status")) for e in events]


def test_batches_a_part_runs_ahead_of_its_claim_in_one_statement(member, launched):
    chords, _ = launched
    # Given a started batch node of 3 parts, whose chord carries each part's input and the document
    execution = _start(member, {"numbers": [1, 2, 3], "lanes": 2})
    parent = _run_parent(execution)
    _, parts, _, contexts = chords[0]
    assert [c["part"]["input"] for c in contexts] == [{"items": [1]}, {"items": [2]}, {"items": [3]}]
    assert contexts[0]["execution"]["data"] == {"numbers": [1, 2, 3], "lanes": 2}
    (part_id, task_id), context = parts[1], contexts[1]
    since = Execution.objects.get(id=execution.id).last_event_seq
    # When the second part's task runs with it
    with CaptureQueriesContext(connection) as queries:
        directive = batches.run_part(part_id, task_id=task_id, hostname="w@h", context=context)
    # Then one statement claimed and finished it and counted it on its batch node
    assert directive is None
    assert [query["sql"].split("(")[0] for query in queries.captured_queries] == ["SELECT flowrunner_finish"]
    part = NodeRun.objects.get(id=part_id)
    assert part.status == "succeeded" and part.output == {"seen": [2]} and part.worker == "w@h"
    assert part.started_at is not None and part.started_at <= part.finished_at
    assert NodeRun.objects.get(id=parent.id).parts_done == 1
    # And its frames are its start, its end and the progress
    assert _frames(execution, since) == [("node", "running"), ("node", "succeeded"), ("status", "running")]


def test_batches_a_part_ahead_runs_once_and_not_after_its_batch_node_ended(member, launched):
    chords, _ = launched
    # Given a started batch node of 3 parts; the first part ran ahead of its claim
    execution = _start(member, {"numbers": [1, 2, 3], "lanes": 2})
    _run_parent(execution)
    _, parts, _, contexts = chords[0]
    batches.run_part(parts[0][0], task_id=parts[0][1], hostname="w@h", context=contexts[0])
    before = NodeRun.objects.get(id=parts[0][0])
    # When its message comes again, and the execution is canceled before the second part's task runs
    batches.run_part(parts[0][0], task_id=parts[0][1], hostname="w@h", context=contexts[0])
    execution_cancel(execution=Execution.objects.get(id=execution.id))
    batches.run_part(parts[1][0], task_id=parts[1][1], hostname="w@h", context=contexts[1])
    # Then the first part is as it was, and the second was canceled without a result
    again = NodeRun.objects.get(id=parts[0][0])
    assert (again.status, again.finished_at, again.output) == (
        before.status,
        before.finished_at,
        before.output,
    )
    second = NodeRun.objects.get(id=parts[1][0])
    assert second.status == "canceled" and second.output is None and second.started_at is None


def test_batches_parts_carry_no_document_over_their_budget(member, launched, settings):
    chords, _ = launched
    # Given a task context limit smaller than the document
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 40
    execution = _start(member, {"numbers": [1, 2, 3], "lanes": 2, "padding": "x" * 50})
    # When the batch node starts
    _run_parent(execution)
    # Then no part's task carries a context: each is claimed first
    assert chords[0][3] == [None, None, None]


@pytest.mark.parametrize("lanes", [3, 2])  # one part per lane; a lane of two parts (a chain)
def test_batches_part_messages_show_their_run_id_and_labels_not_their_context(member, monkeypatch, lanes):
    # Given a batch node whose parts carry the document (a marker in it), and chords captured
    published = []

    class CapturedChord:
        def __init__(self, header, body):
            self.header, self.body = header, body

        def apply_async(self):
            published.append(self)

    monkeypatch.setattr(batches, "chord", CapturedChord)
    monkeypatch.setattr(dispatch, "send_now", lambda *args, **kwargs: None)
    execution = _start(member, {"numbers": [1, 2, 3], "lanes": lanes, "marker": "doc-marker-4711"})
    # When the batch node starts
    parent = _run_parent(execution)
    # Then each part's task carries its context, but monitors and the reaper read the run id and the labels
    parts = {p.task_id: p.id for p in NodeRun.objects.filter(parent=parent)}
    signatures = [
        member for lane in published[0].header.tasks for member in getattr(lane, "tasks", None) or [lane]
    ]
    assert len(signatures) == 3 and len(published[0].header.tasks) == lanes
    for signature in signatures:
        assert "doc-marker-4711" in repr(signature.kwargs)
        assert signature.options["argsrepr"] == f"[{parts[signature.options['task_id']]}]"
        assert signature.options["kwargsrepr"] == repr({"execution_id": str(execution.id), "node_id": "fan"})
