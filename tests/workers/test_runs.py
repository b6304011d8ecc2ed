"""The node-run state machine driven in-process: statements per run, limits, unstorable values, waits, frames."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import secret_set
from executions import broadcast, dispatch
from executions.models import ExecutionEvent, NodeRun
from tests.workers.steps import start_execution
from workers import engine, reaper
from workers.context import EngineContext
from workers.outcomes import Outcome

pytestmark = pytest.mark.django_db(transaction=True)

THREE = """
metadata: {name: three}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}, next: {success: b}}
  b: {type: transform, params: {script: "return {b: input.a + 1}"}, next: {success: c}}
  c: {type: transform, params: {script: "return {c: input.b + 1}"}}
"""


def _run_next(sent):
    task, node_run_id, options = sent.pop(0)
    assert task == dispatch.RUN_NODE
    return engine.run_node(node_run_id, task_id=options.get("task_id") or "t1", hostname="w@h")


def test_runs_a_node_run_is_two_statements_claim_and_finish(member, sent):
    # Given a three-node execution whose first node has run (flow version cached, connection open)
    execution = start_execution(member, THREE)
    _run_next(sent)
    # When the middle node runs
    with CaptureQueriesContext(connection) as queries:
        _run_next(sent)
    # Then it took one claim statement and one finish statement, no transaction of its own
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 2, statements
    assert "flowrunner_claim" in statements[0] and "flowrunner_finish" in statements[1]
    _run_next(sent)
    execution.refresh_from_db()
    assert execution.status == "completed" and execution.results == {"a": 1, "b": 2, "c": 3}


def test_runs_the_next_task_carries_the_task_id_the_finish_stored(member, sent):
    # Given an execution whose first node finished
    execution = start_execution(member, THREE)
    _run_next(sent)
    # Then the published task of the next node has the task id its queued run was created with
    task, node_run_id, options = sent[0]
    assert NodeRun.objects.get(id=node_run_id).task_id == options["task_id"]
    assert NodeRun.objects.get(id=node_run_id).execution_id == execution.id


def test_runs_status_events_carry_no_input(member, sent):
    # Given an execution started with a large input
    execution = start_execution(member, THREE, {"blob": "x" * 10_000})
    # When it runs to the end
    while sent:
        _run_next(sent)
    # Then no stored status event repeats the input, and seqs are gapless
    events = list(ExecutionEvent.objects.filter(execution=execution).order_by("seq"))
    statuses = [e.payload["status"] for e in events if e.type == "status"]
    assert statuses and all("input" not in status for status in statuses)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert statuses[-1]["status"] == "completed" and statuses[-1]["results"]["c"] == 3


def test_runs_status_events_of_the_engine_have_the_shape_of_those_written_in_python(member, sent):
    # Given an execution that ran to the end
    execution = start_execution(member, THREE)
    while sent:
        _run_next(sent)
    # Then every status event (the first written in Python by the start, the others by the engine's functions)
    # has the same keys: the ExecutionStatus without input and trigger
    events = ExecutionEvent.objects.filter(execution=execution, type="status").order_by("seq")
    shapes = {tuple(sorted(event.payload["status"])) for event in events}
    assert len(shapes) == 1, shapes
    assert "waiting_reason" in next(iter(shapes))


def test_runs_the_frames_of_a_finish_are_broadcast_before_the_next_task_is_published(
    member, sent, monkeypatch
):
    # Given a recorder of what leaves the worker, in order
    order: list[str] = []
    real_send_now = dispatch.send_now
    monkeypatch.setattr(
        broadcast,
        "_send_direct",
        lambda frames, account_id: order.extend(f"frame:{f['type']}:{f.get('node_id')}" for f in frames),
    )
    monkeypatch.setattr(broadcast.settings, "CHANNEL_LAYERS", {"default": {"BACKEND": "in-memory"}})

    def record_task(task, node_run_id, **options):
        order.append(f"task:{node_run_id}")
        real_send_now(task, node_run_id, **options)

    monkeypatch.setattr(dispatch, "send_now", record_task)
    execution = start_execution(member, THREE)
    order.clear()
    # When the first node runs
    _run_next(sent)
    # Then its frames (succeeded, next queued, progress) went out before the next node's task
    task_at = next(i for i, entry in enumerate(order) if entry.startswith("task:"))
    assert "frame:node:a" in order[:task_at] and "frame:node:b" in order[:task_at], order
    assert execution.id


def test_runs_unstorable_values_are_replaced_and_the_node_succeeds_once(member, sent, monkeypatch):
    # Given a node whose output holds NaN, a NUL and a lone surrogate (as an HTTP answer or a script may)
    execution = start_execution(member, THREE)
    monkeypatch.setattr(
        engine,
        "execute",
        lambda call, ctx: Outcome(ok=True, output={"a": float("nan"), "text": "x\x00y", "s": "\ud800"}),
    )
    # When it runs
    _run_next(sent)
    # Then it succeeded on its first attempt with the values made storable
    run = NodeRun.objects.get(execution=execution, node_id="a")
    assert (run.status, run.attempt) == ("succeeded", 1)
    assert run.output == {"a": None, "text": "x\ufffdy", "s": "\ufffd"}
    execution.refresh_from_db()
    assert execution.data["text"] == "x\ufffdy"


def test_runs_a_document_over_its_limit_fails_the_node_naming_the_limit(member, sent, settings):
    # Given a document limit that two 3 kB outputs together exceed, though each alone fits
    settings.FLOWRUNNER_MAX_DOCUMENT_BYTES = 5000
    flow = THREE.replace('"return {a: 1}"', "\"return {a: 'x'.repeat(3000)}\"").replace(
        '"return {b: input.a + 1}"', "\"return {b: 'y'.repeat(3000)}\""
    )
    execution = start_execution(member, flow)
    # When both run
    _run_next(sent)
    _run_next(sent)
    # Then the second fails with the limit named, its output not merged, and nothing follows
    execution.refresh_from_db()
    assert execution.status == "failed", execution.error
    assert "FLOWRUNNER_MAX_DOCUMENT_BYTES (5000)" in execution.error
    assert "b" not in execution.data and sent == []


WAIT = """
metadata: {name: wait}
nodes:
  pause: {type: wait, params: {duration: 30s}, next: {success: after}}
  after: {type: transform, params: {script: "return {done: true}"}}
"""


def test_runs_a_wait_is_resumed_only_by_its_own_marker(member, sent):
    # Given a wait node that paused (its resume scheduled)
    execution = start_execution(member, WAIT)
    _run_next(sent)
    run = NodeRun.objects.get(execution=execution, node_id="pause")
    assert run.status == "running" and run.wait_until is not None
    assert sent[0][0] == dispatch.RESUME_NODE and sent[0][2]["countdown"] == 30
    sent.clear()
    # When its resume arrives twice
    engine.resume_node(run.id)
    engine.resume_node(run.id)
    # Then it succeeded once and the next node was queued once
    assert NodeRun.objects.get(id=run.id).status == "succeeded"
    assert [task for task, _, _ in sent] == [dispatch.RUN_NODE]


RETRYING = """
metadata: {name: retrying}
nodes:
  flaky:
    type: transform
    params: {script: "if (execution.attempt < 2) throw new Error('no'); return {ran: execution.attempt}"}
    retry: {max_retries: 3, wait: 1s, backoff: constant}
"""


def test_runs_the_reaper_runs_a_lost_retry_attempt_again_instead_of_resuming_it(member, sent, settings):
    # Given a node on its second attempt (a retry), running, whose worker died without a trace
    settings.FLOWRUNNER_STALE_AFTER = 0.0
    execution = start_execution(member, RETRYING)
    directive = _run_next(sent)
    engine.runs.claim(directive.node_run_id, task_id="t2", hostname="dead@h")
    NodeRun.objects.filter(id=directive.node_run_id).update(heartbeat_at=None)
    # When the reaper passes
    reaper.reap()
    # Then the attempt failed as lost and a third attempt is queued: nothing "succeeded" without running
    runs = list(NodeRun.objects.filter(execution=execution).order_by("id"))
    assert [(r.attempt, r.status) for r in runs] == [(1, "failed"), (2, "failed"), (3, "queued")]
    assert runs[1].error.startswith("worker lost")
    execution.refresh_from_db()
    assert execution.status == "running" and "flaky" not in (execution.node_outputs or {})


SECRETIVE = """
metadata: {name: secretive}
nodes:
  use: {type: transform, params: {script: "return {length: secrets.API_KEY.length}"}}
"""


def test_runs_secrets_another_key_cannot_decrypt_fail_the_node_once_with_the_reason(member, sent, settings):
    # Given a secret stored with one key, and a worker configured with another
    account, _ = member
    secret_set(account=account, key="API_KEY", value="sk-live-1234567890")
    execution = start_execution(member, SECRETIVE)
    settings.FLOWRUNNER_ENCRYPTION_KEY = bytes(32)
    # When the node that reads it runs
    directive = _run_next(sent)
    # Then it failed at once, not retried, with the real reason in the node run and the execution
    run = NodeRun.objects.get(execution=execution)
    assert directive is None and (run.status, run.attempt) == ("failed", 1)
    assert "could not be decrypted" in run.error and "FLOWRUNNER_ENCRYPTION_KEY" in run.error
    execution.refresh_from_db()
    assert execution.status == "failed" and "could not be decrypted" in execution.error


def test_runs_a_failure_around_the_work_fails_the_node_once_instead_of_leaving_it_running(
    member, sent, monkeypatch
):
    # Given a node whose output cannot be redacted (a failure outside the kind's own work)
    execution = start_execution(member, THREE)

    def broken(self, output):
        raise RuntimeError("redaction broke")

    monkeypatch.setattr(EngineContext, "redacted_output", broken)
    # When it runs
    _run_next(sent)
    # Then the node failed once with the real reason: nothing is left running for the reaper
    run = NodeRun.objects.get(execution=execution, node_id="a")
    assert (run.status, run.attempt) == ("failed", 1) and run.error == "RuntimeError: redaction broke"
    execution.refresh_from_db()
    assert execution.status == "failed" and "redaction broke" in execution.error


def test_runs_the_claims_frames_reach_the_account_group_too(member, sent, monkeypatch):
    # Given a recorder of the account each broadcast is addressed to
    accounts: list[str] = []
    monkeypatch.setattr(broadcast, "_send_direct", lambda frames, account_id: accounts.append(account_id))
    monkeypatch.setattr(broadcast.settings, "CHANNEL_LAYERS", {"default": {"BACKEND": "in-memory"}})
    execution = start_execution(member, THREE)
    accounts.clear()
    # When a node is claimed and finished
    _run_next(sent)
    # Then both the claim's frames and the finish's went to the execution's account (not to "None")
    assert len(accounts) == 2 and set(accounts) == {str(execution.account_id)}, accounts


def test_runs_only_the_finish_waits_for_its_wal_flush(member, sent):
    # Given an execution whose first node is queued
    start_execution(member, THREE)
    # When it runs
    with CaptureQueriesContext(connection) as queries:
        _run_next(sent)
    # Then the claim commits asynchronously and the finish, which flushes both, durably
    claim_sql, finish_sql = (q["sql"] for q in queries.captured_queries)
    assert "synchronous_commit" in claim_sql and "'off'" in claim_sql
    assert "synchronous_commit" not in finish_sql
