"""The engine's end of an execution, in-process: it admits what waited for the slot, at no statement of its own."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from executions import dispatch, lifecycle
from executions.models import Execution, NodeRun
from executions.services import execution_start
from flows.services import flow_create
from workers import engine

pytestmark = pytest.mark.django_db(transaction=True)

ONE_AT_A_TIME = """
metadata: {name: one at a time, concurrency: 1}
nodes:
  a: {type: transform, params: {script: "if (input.fail) throw new Error('boom'); return {a: 1}"}}
"""
FREE = """
metadata: {name: free}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


def _run(sent, execution_id=None):
    index = 0
    if execution_id is not None:
        index = next(
            i
            for i, (_, run_id, _) in enumerate(sent)
            if NodeRun.objects.get(id=run_id).execution_id == execution_id
        )
    task, node_run_id, options = sent.pop(index)
    assert task == dispatch.RUN_NODE
    return engine.run_node(node_run_id, task_id=options.get("task_id") or "t1", hostname="w@h")


@pytest.mark.parametrize("fail", [False, True])
def test_admission_engine_end_of_a_run_starts_the_waiting_one(member, sent, fail):
    # given a flow run one at a time, one execution running and one waiting
    account, user = member
    flow = flow_create(account=account, user=user, content=ONE_AT_A_TIME)
    first, _ = execution_start(account=account, flow=flow, input={"fail": fail})
    second, _ = execution_start(account=account, flow=flow)
    assert [run for _, run, _ in sent] == [NodeRun.objects.get(execution=first).id]
    # when the first one's node completes (or fails) in a worker
    _run(sent)
    # then the first ended and the waiting one got its node run, published
    first.refresh_from_db()
    assert first.status == ("failed" if fail else "completed")
    assert [run for _, run, _ in sent] == [NodeRun.objects.get(execution=second).id]
    _run(sent)
    second.refresh_from_db()
    assert second.status == "completed" and second.waiting_reason == ""


def test_admission_engine_end_costs_no_statement_of_its_own(member, sent):
    # given an execution of an unbounded flow, without a callback (flow version cached, connection open)
    account, user = member
    flow = flow_create(account=account, user=user, content=FREE)
    execution_start(account=account, flow=flow)
    _run(sent)
    execution, _ = execution_start(account=account, flow=flow)
    # when its last node runs
    with CaptureQueriesContext(connection) as queries:
        _run(sent)
    # then the claim and the finish were all: the finish itself said that no callback or waiting run follows
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 2, statements
    assert "flowrunner_claim" in statements[0] and "flowrunner_finish" in statements[1]
    assert Execution.objects.get(id=execution.id).status == "completed"
    assert sent == []


def test_admission_engine_end_sends_the_callback_its_finish_reported(member, sent, monkeypatch, settings):
    # given an execution with a completion callback, and the callback task's publish captured
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = True
    account, user = member
    flow = flow_create(account=account, user=user, content=FREE)
    execution, _ = execution_start(account=account, flow=flow, callback_url="http://127.0.0.1:9/done")
    callbacks: list[object] = []
    monkeypatch.setattr(lifecycle, "send_callback", callbacks.append)
    # when its only node runs
    with CaptureQueriesContext(connection) as queries:
        _run(sent)
    # then its callback was sent once, with no statement beyond the claim and the finish
    assert callbacks == [str(execution.id)]
    assert len(queries.captured_queries) == 2


def test_admission_engine_end_admits_a_run_that_decided_to_wait_while_it_finished(member, sent):
    # given a flow run one at a time: one execution running, and a new run whose transaction decided to wait
    # (it counted the first as running) but has not committed yet
    account, user = member
    flow = flow_create(account=account, user=user, content=ONE_AT_A_TIME)
    first, _ = execution_start(account=account, flow=flow)
    decided, release = threading.Event(), threading.Event()
    second: list[Execution] = []

    def start_second() -> None:
        try:
            with transaction.atomic():
                second.append(execution_start(account=account, flow=flow)[0])
                decided.set()
                release.wait(10)
        finally:
            connection.close()

    def finish_first() -> None:
        try:
            _run(sent, execution_id=first.id)
        finally:
            connection.close()

    starter = threading.Thread(target=start_second)
    starter.start()
    assert decided.wait(10) and second[0].waiting_reason != ""
    # when the first execution's last node finishes meanwhile, and the new run commits a moment later
    finisher = threading.Thread(target=finish_first)
    finisher.start()
    time.sleep(0.3)
    release.set()
    starter.join(10)
    finisher.join(10)
    # then the end saw the waiting run (it waited for the decision's commit) and admitted it
    waiting = Execution.objects.get(id=second[0].id)
    assert Execution.objects.get(id=first.id).status == "completed"
    assert waiting.waiting_reason == ""
    assert [run for _, run, _ in sent] == [NodeRun.objects.get(execution=waiting).id]
