"""The engine driven in-process (no broker): claims, the finish transaction, events, duplicates, cancel."""

from __future__ import annotations

import pytest

from executions import dispatch
from executions.models import Execution, ExecutionEvent, NodeRun
from executions.services import execution_cancel
from tests.workers.steps import start_execution
from workers import engine

pytestmark = pytest.mark.django_db(transaction=True)

LINEAR = """
metadata: {name: linear}
nodes:
  a: {type: transform, params: {script: "return {a: input.x + 1}"}, next: {success: b}}
  b: {type: transform, params: {script: "return {b: input.a * 10}"}}
"""


def _drain(sent):
    while sent:
        task, node_run_id, _ = sent.pop(0)
        assert task == dispatch.RUN_NODE
        engine.run_node(node_run_id, task_id="t", hostname="test@host")


def test_engine_runs_a_linear_flow_with_gapless_events(member, sent):
    # Given a started two-node execution
    execution = start_execution(member, LINEAR, {"x": 1})
    assert [task for task, _, _ in sent] == [dispatch.RUN_NODE]
    # When every published task runs
    _drain(sent)
    # Then the execution completed with the merged document and 100% progress
    execution.refresh_from_db()
    assert execution.status == "completed"
    assert execution.results == {"x": 1, "a": 2, "b": 20}
    assert execution.node_outputs == {"a": {"a": 2}, "b": {"b": 20}}
    assert execution.progress == 100 and execution.current_node == "b"
    # And the events are numbered 1..n without gaps, matching last_event_seq
    seqs = list(ExecutionEvent.objects.filter(execution=execution).values_list("seq", flat=True))
    assert seqs == list(range(1, execution.last_event_seq + 1))


def test_engine_duplicate_delivery_changes_nothing(member, sent):
    # Given a finished execution
    execution = start_execution(member, LINEAR, {"x": 1})
    first_run = sent[0][1]
    _drain(sent)
    execution.refresh_from_db()
    before = (
        execution.last_event_seq,
        NodeRun.objects.filter(execution=execution).count(),
        execution.results,
    )
    # When the first node's task is delivered again
    assert engine.run_node(first_run, task_id="dup", hostname="other@host") is None
    # Then no row, event or document changed and nothing was published
    execution.refresh_from_db()
    after = (execution.last_event_seq, NodeRun.objects.filter(execution=execution).count(), execution.results)
    assert after == before
    assert sent == []


def test_engine_discards_a_running_nodes_result_after_cancel(member, sent, monkeypatch):
    # Given a node that is claimed and running
    execution = start_execution(member, LINEAR, {"x": 1})
    node_run_id = sent.pop(0)[1]
    real_execute = engine.execute

    def cancel_then_execute(call, ctx):
        execution_cancel(execution=Execution.objects.get(id=execution.id))
        return real_execute(call, ctx)

    monkeypatch.setattr(engine, "execute", cancel_then_execute)
    # When the execution is canceled while the node runs
    engine.run_node(node_run_id, task_id="t", hostname="h")
    # Then its result is discarded: the run is canceled, nothing is merged and nothing follows
    execution.refresh_from_db()
    assert execution.status == "canceled"
    assert "a" not in execution.data
    assert NodeRun.objects.get(id=node_run_id).status == "canceled"
    assert sent == []


FLAKY = """
metadata: {name: flaky}
nodes:
  f:
    type: transform
    params: {script: "if (execution.attempt < 2) throw new Error('try again'); return {ok: execution.attempt}"}
    retry: {max_retries: 2, wait: 1s, backoff: constant}
"""


def test_engine_failure_with_retries_left_asks_for_a_celery_retry(member, sent):
    # Given a node failing its first attempt with retries configured
    execution = start_execution(member, FLAKY, {})
    node_run_id = sent.pop(0)[1]
    # When it runs
    directive = engine.run_node(node_run_id, task_id="t", hostname="h")
    # Then the attempt is failed, a retrying attempt 2 exists and the task must retry with the countdown
    assert isinstance(directive, engine.RetryLater) and directive.countdown == 1
    first, second = NodeRun.objects.filter(execution=execution).order_by("id")
    assert (first.status, first.attempt) == ("failed", 1)
    assert (second.status, second.attempt, second.id) == ("retrying", 2, directive.node_run_id)
    # When the retry runs, it succeeds
    engine.run_node(directive.node_run_id, task_id="t", hostname="h")
    execution.refresh_from_db()
    assert execution.status == "completed" and execution.results == {"ok": 2}


def test_engine_output_over_the_document_limit_fails_the_node(member, sent, settings):
    settings.FLOWRUNNER_MAX_DOCUMENT_BYTES = 2048
    execution = start_execution(
        member, LINEAR.replace("return {a: input.x + 1}", "return {a: 'x'.repeat(5000)}"), {"x": 1}
    )
    _drain(sent)
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert "over the limit" in execution.error
