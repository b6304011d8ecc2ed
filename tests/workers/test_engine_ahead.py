"""A pure node run ahead of its claim, in-process (no broker): one statement, and nothing taken that is not its."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import secret_set
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
  b: {type: transform, params: {script: "console.log('b saw ' + input.a); return {b: input.a * 10}"}}
"""


def first_node_done(member, sent, content: str = LINEAR, input: dict | None = None):
    """An execution whose first node ran (claimed as usual): the second node's task is the only one sent."""
    execution = start_execution(member, content, input if input is not None else {"x": 1})
    _, run_id, options = sent.pop(0)
    engine.run_node(run_id, task_id=options.get("task_id") or "first", hostname="w@h")
    assert len(sent) == 1
    task, run_id, options = sent.pop(0)
    assert task == dispatch.RUN_NODE
    return execution, run_id, options


def frames_of(execution: Execution, node_id: str) -> list[tuple[str, str | None]]:
    out = []
    for payload in (
        ExecutionEvent.objects.filter(execution=execution, node_id=node_id)
        .order_by("seq")
        .values_list("payload", flat=True)
    ):
        if payload["type"] == "node":
            out.append(("node", payload["node"]["status"]))
        elif payload["type"] == "status":
            out.append(("status", payload["status"]["status"]))
        else:
            out.append((payload["type"], None))
    return out


def test_engine_ahead_the_next_task_carries_the_document_the_finish_left(member, sent):
    # given an execution whose first node finished
    execution, run_id, options = first_node_done(member, sent)
    # then the second node's task carries the merged document, at the step its run was created at
    context = options["extra"]["context"]
    assert context["node_id"] == "b"
    assert context["execution"]["data"] == {"x": 1, "a": 2}
    assert context["execution"]["node_outputs"] == {"a": {"a": 2}}
    assert context["execution"]["steps"] == NodeRun.objects.get(id=run_id).step
    assert context["execution"]["has_secrets"] is False
    assert context["execution"]["id"] == str(execution.id)


THREE = """
metadata: {name: three}
nodes:
  a: {type: transform, params: {script: "return {a: input.x + 1}"}, next: {success: b}}
  b: {type: transform, params: {script: "console.log('b ' + input.a); return {b: input.a * 10}"}, next: {success: c}}
  c: {type: transform, params: {script: "return {c: input.b + 1}"}}
"""


def test_engine_ahead_a_pure_node_runs_and_is_claimed_in_one_statement(member, sent):
    # given the second node's task of three with its context
    execution, run_id, options = first_node_done(member, sent, THREE)
    # when it runs
    with CaptureQueriesContext(connection) as queries:
        directive = engine.run_node(
            run_id, task_id=options["task_id"], hostname="w@h", context=options["extra"]["context"]
        )
    # then one statement claimed and finished it and created the third node's run
    assert directive is None
    assert [query["sql"].split("(")[0] for query in queries.captured_queries] == ["SELECT flowrunner_finish"]
    execution.refresh_from_db()
    assert execution.status == "running" and execution.current_node == "b"
    assert execution.data == {"x": 1, "a": 2, "b": 20}
    run = NodeRun.objects.get(id=run_id)
    assert run.status == "succeeded" and run.worker == "w@h" and run.task_id == options["task_id"]
    assert run.started_at is not None and run.started_at <= run.finished_at
    # and its events are those of a claim followed by a finish, in that order, with one status frame for
    # both of the execution's moves (current node, then progress as the third node is queued)
    assert frames_of(execution, "b") == [
        ("node", "queued"),
        ("node", "running"),
        ("log", None),
        ("node", "succeeded"),
        ("status", "running"),
    ]
    [status] = ExecutionEvent.objects.filter(execution=execution, node_id="b", type="status")
    assert status.payload["status"]["current_node"] == "b"
    assert status.payload["status"]["progress"] == round(execution.progress, 2)
    # and the third node's task carries the new document; run ahead too, it completes the execution
    [(_, third, options)] = sent
    assert options["extra"]["context"]["execution"]["data"] == {"x": 1, "a": 2, "b": 20}
    engine.run_node(third, task_id=options["task_id"], hostname="w@h", context=options["extra"]["context"])
    execution.refresh_from_db()
    assert execution.status == "completed" and execution.results == {"x": 1, "a": 2, "b": 20, "c": 21}
    assert execution.progress == 100 and execution.current_node == "c"
    # and a change of the execution's status keeps a frame of its own: running at c, then completed
    assert [frame for frame in frames_of(execution, "c") if frame[0] == "status"] == [
        ("status", "running"),
        ("status", "completed"),
    ]
    seqs = list(ExecutionEvent.objects.filter(execution=execution).values_list("seq", flat=True))
    assert seqs == list(range(1, execution.last_event_seq + 1))


def test_engine_ahead_a_second_delivery_changes_nothing(member, sent):
    # given the second node run ahead of its claim and finished
    execution, run_id, options = first_node_done(member, sent)
    context = options["extra"]["context"]
    engine.run_node(run_id, task_id=options["task_id"], hostname="w@h", context=context)
    execution.refresh_from_db()
    before = (execution.last_event_seq, execution.results, list(NodeRun.objects.values_list("id", "status")))
    # when the same message is delivered again
    assert engine.run_node(run_id, task_id=options["task_id"], hostname="w@h2", context=context) is None
    # then its finish claimed nothing, the claim it fell back to found the run taken, and nothing changed
    execution.refresh_from_db()
    after = (execution.last_event_seq, execution.results, list(NodeRun.objects.values_list("id", "status")))
    assert after == before
    assert NodeRun.objects.get(id=run_id).worker == "w@h"
    assert sent == []


def test_engine_ahead_a_run_canceled_meanwhile_records_nothing_of_its_work(member, sent):
    # given the second node's task, and its execution canceled before the task runs
    execution, run_id, options = first_node_done(member, sent)
    assert execution_cancel(execution=Execution.objects.get(id=execution.id))
    seq = Execution.objects.get(id=execution.id).last_event_seq
    # when the task runs ahead of its claim
    assert (
        engine.run_node(
            run_id, task_id=options["task_id"], hostname="w@h", context=options["extra"]["context"]
        )
        is None
    )
    # then the run stays canceled, without output or start, and no event was added
    run = NodeRun.objects.get(id=run_id)
    assert run.status == "canceled" and run.output is None and run.started_at is None
    assert Execution.objects.get(id=execution.id).last_event_seq == seq


def test_engine_ahead_a_stale_document_falls_back_to_the_claim(member, sent):
    # given a task whose context names a document version the execution is no longer at
    execution, run_id, options = first_node_done(member, sent)
    context = options["extra"]["context"]
    context["execution"]["steps"] += 1
    context["execution"]["data"] = {"x": 1, "a": 1000}
    # when it runs
    assert engine.run_node(run_id, task_id=options["task_id"], hostname="w@h", context=context) is None
    # then its own result was refused, and the run was claimed and run again on the stored document
    execution.refresh_from_db()
    assert execution.status == "completed"
    assert execution.results == {"x": 1, "a": 2, "b": 20}
    assert NodeRun.objects.filter(execution=execution, node_id="b").count() == 1
    assert [status for kind, status in frames_of(execution, "b") if kind == "node"] == [
        "queued",
        "running",
        "succeeded",
    ]


RETRIED = """
metadata: {name: retried}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}, next: {success: b}}
  b:
    type: transform
    params: {script: "throw new Error('not yet')"}
    retry: {max_retries: 2, wait: 3s}
"""


def test_engine_ahead_a_failed_first_attempt_is_retried_as_usual(member, sent):
    # given a pure node that throws and may be retried, run ahead of its claim
    execution, run_id, options = first_node_done(member, sent, RETRIED, {})
    # when it runs
    directive = engine.run_node(
        run_id, task_id=options["task_id"], hostname="w@h", context=options["extra"]["context"]
    )
    # then its first attempt is recorded as run and failed, and a Celery retry of the next attempt is asked for
    first = NodeRun.objects.get(id=run_id)
    assert first.status == "failed" and first.started_at is not None and first.worker == "w@h"
    assert directive is not None and directive.node_run_id != run_id
    again = NodeRun.objects.get(id=directive.node_run_id)
    assert again.status == "retrying" and again.attempt == 2
    assert Execution.objects.get(id=execution.id).status == "running"


BIG = """
metadata: {name: big}
nodes:
  a: {type: transform, params: {script: "return {a: 'x'.repeat(1500)}"}, next: {success: b}}
  b: {type: transform, params: {script: "return {b: 'y'.repeat(1500)}"}}
"""


def test_engine_ahead_a_document_over_the_limit_fails_the_node_once(member, sent, settings):
    # given documents limited to 2 KiB and a pure node whose output would pass it, run ahead of its claim
    settings.FLOWRUNNER_MAX_DOCUMENT_BYTES = 2048
    execution, run_id, options = first_node_done(member, sent, BIG, {})
    # when it runs
    engine.run_node(run_id, task_id=options["task_id"], hostname="w@h", context=options["extra"]["context"])
    # then the refused finish wrote nothing, and the failure that followed claimed and failed the run once
    run = NodeRun.objects.get(id=run_id)
    assert run.status == "failed" and "FLOWRUNNER_MAX_DOCUMENT_BYTES" in run.error
    assert run.started_at is not None
    assert NodeRun.objects.filter(execution=execution, node_id="b").count() == 1
    assert Execution.objects.get(id=execution.id).status == "failed"


def test_engine_ahead_a_document_over_the_task_limit_is_not_carried(member, sent, settings):
    # given tasks that may carry 64 bytes of document, and a document bigger than that
    settings.FLOWRUNNER_TASK_CONTEXT_BYTES = 64
    _, _, options = first_node_done(member, sent, LINEAR, {"x": 1, "pad": "y" * 200})
    # then the next task carries none (it will be claimed first)
    assert options["extra"]["context"] is None


SECRET = """
metadata: {name: secret}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}, next: {success: b}}
  b: {type: transform, params: {script: "console.log('key ' + secrets.API_KEY); return {n: secrets.API_KEY.length}"}}
"""


def test_engine_ahead_secrets_are_read_and_masked_as_after_a_claim(member, sent):
    # given an account with a secret and a pure node that reads and logs it
    account, _ = member
    secret_set(account=account, key="API_KEY", value="sk-live-1234567890")
    execution, run_id, options = first_node_done(member, sent, SECRET, {})
    context = options["extra"]["context"]
    assert context["execution"]["has_secrets"] is True
    # when it runs ahead of its claim
    engine.run_node(run_id, task_id=options["task_id"], hostname="w@h", context=context)
    # then it saw the secret, and the logged value is masked in the stored event
    execution.refresh_from_db()
    assert execution.status == "completed" and execution.results["n"] == len("sk-live-1234567890")
    logs = ExecutionEvent.objects.filter(execution=execution, type="log").values_list("payload", flat=True)
    assert [payload["log"]["message"] for payload in logs] == ["key ***"]


HTTP_FIRST = """
metadata: {name: http-first}
nodes:
  a: {type: http.request, params: {url: "https://example.com/"}, next: {success: b}}
  b: {type: transform, params: {script: "return {b: 1}"}}
"""


def test_engine_ahead_a_pure_first_node_runs_and_starts_the_execution_in_one_statement(member, sent):
    # given a new execution of three pure nodes, whose first task was published with the execution's document
    execution = start_execution(member, THREE, {"x": 1})
    [(task, run_id, options)] = sent
    sent.clear()
    context = options["extra"]["context"]
    assert task == dispatch.RUN_NODE and context["node_id"] == "a"
    assert context["execution"]["data"] == {"x": 1} and context["execution"]["has_secrets"] is False
    assert options["task_id"] == NodeRun.objects.get(id=run_id).task_id != ""
    # when it runs
    with CaptureQueriesContext(connection) as queries:
        engine.run_node(run_id, task_id=options["task_id"], hostname="w@h", context=context)
    # then one statement started the execution, claimed and finished the node, and queued the next one
    assert [query["sql"].split("(")[0] for query in queries.captured_queries] == ["SELECT flowrunner_finish"]
    execution.refresh_from_db()
    assert execution.status == "running" and execution.started_at is not None
    assert execution.data == {"x": 1, "a": 2} and execution.current_node == "a"
    run = NodeRun.objects.get(id=run_id)
    assert run.status == "succeeded" and run.started_at >= execution.created_at
    # and the execution's status went queued -> running, a frame each
    statuses = ExecutionEvent.objects.filter(execution=execution, type="status").order_by("seq")
    assert [event.payload["status"]["status"] for event in statuses] == ["queued", "running"]
    [(_, second, _)] = sent
    assert NodeRun.objects.get(id=second).node_id == "b"


def test_engine_ahead_a_first_node_knows_the_account_holds_secrets(member, sent):
    # given an account with a secret
    secret_set(account=member[0], key="API_KEY", value="sk-live-1234567890")
    # when an execution of a pure first node starts / then its task says secrets must be read to mask them
    start_execution(member, THREE, {"x": 1})
    [(_, _, options)] = sent
    assert options["extra"]["context"]["execution"]["has_secrets"] is True


def test_engine_ahead_a_first_node_with_effects_is_claimed_first(member, sent):
    # given a flow that starts with an HTTP call / when an execution starts
    start_execution(member, HTTP_FIRST, {})
    # then its task carries no document and its run has no task id before its claim
    [(_, run_id, options)] = sent
    assert "extra" not in options or not options["extra"]
    assert NodeRun.objects.get(id=run_id).task_id == ""
