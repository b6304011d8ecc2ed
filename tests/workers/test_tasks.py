"""workers.tasks: thin Celery adapters over the engine, safe to run twice; database errors become retries."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import OperationalError

from executions import dispatch
from executions.models import Execution, ExecutionEvent, NodeRun
from tests.workers.steps import start_execution
from workers import batches, reaper, tasks
from workers.outcomes import RetryLater

ONE = """
metadata: {name: one}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


class Retried(Exception):
    """What the fake task's retry() returns for the adapter to raise."""


class FakeTask:
    """A bound task's `self`: its name, and the retries asked of it."""

    name = "flowrunner.fake"

    def __init__(self, kwargs: dict | None = None, delivery_info: dict | None = None) -> None:
        self.retries: list[dict] = []
        self.request = SimpleNamespace(kwargs=kwargs or {}, delivery_info=delivery_info or {}, headers=None)

    def retry(self, **options) -> Retried:
        self.retries.append(options)
        return Retried()


def snapshot(execution: Execution) -> tuple:
    """Everything a task could change: the execution's row, its node runs and its events."""
    stored = Execution.objects.get(id=execution.id)
    runs = list(
        NodeRun.objects.filter(execution=execution).order_by("id").values("id", "status", "finished_at")
    )
    return (
        stored.status,
        stored.results,
        stored.last_event_seq,
        runs,
        ExecutionEvent.objects.filter(execution=execution).count(),
    )


@pytest.mark.django_db(transaction=True)
def test_tasks_run_node_twice_on_a_finished_run_does_nothing_the_second_time(member, sent):
    # given a one-node execution whose task was delivered and ran
    execution = start_execution(member, ONE)
    task, node_run_id, _ = sent.pop(0)
    assert task == dispatch.RUN_NODE
    tasks.run_node.apply(args=[node_run_id], task_id="delivery-1")
    finished = snapshot(execution)
    assert finished[0] == "completed" and finished[1] == {"a": 1}
    # when the same task is delivered again (a broker redelivery), and once more under another task id
    again = tasks.run_node.apply(args=[node_run_id], task_id="delivery-1")
    other = tasks.run_node.apply(args=[node_run_id], task_id="delivery-2")
    # then both ran without error and changed nothing: no status, node run, event or published task more
    assert again.successful() and other.successful(), (again.traceback, other.traceback)
    assert snapshot(execution) == finished
    assert sent == []


def test_tasks_a_database_error_drops_the_connection_and_retries_soon(monkeypatch):
    # given a task body whose database connection broke, and the process's open connections
    closed = []

    class Connection:
        def close(self) -> None:
            closed.append(self)

    class Connections:
        def all(self, initialized_only: bool = False) -> list:
            return [Connection(), Connection()]

    monkeypatch.setattr(tasks, "connections", Connections())
    fake = FakeTask()

    @tasks.reconnecting
    def body(self, node_run_id):
        raise OperationalError("server closed the connection unexpectedly")

    # when it runs
    with pytest.raises(Retried):
        body(fake, 7)
    # then every connection was closed (the next run opens fresh ones) and a retry asked after the short
    # database countdown, with no retry limit
    assert len(closed) == 2
    assert fake.retries == [{"countdown": tasks.DATABASE_RETRY_COUNTDOWN, "max_retries": None}]


def test_tasks_other_errors_are_not_retried():
    # given a task body failing with an ordinary error
    fake = FakeTask()

    @tasks.reconnecting
    def body(self, node_run_id):
        raise ValueError("a bug")

    # when it runs / then the error propagates and no retry was asked
    with pytest.raises(ValueError, match="a bug"):
        body(fake, 7)
    assert fake.retries == []


def test_tasks_an_engine_retry_directive_becomes_a_celery_retry_of_the_run():
    # given a directive to run node run 9 again in 2.5 s, from a task that carried its labels and a context
    fake = FakeTask(kwargs={"execution_id": "e1", "node_id": "n", "context": {"execution": {}}})
    # when the adapter hands it back / then Celery is asked to retry with the run id and that countdown,
    # keeping the labels but not the document the first attempt carried (it is another run's, or stale)
    with pytest.raises(Retried):
        tasks._retry_or_done(fake, RetryLater(node_run_id=9, countdown=2.5))
    assert fake.retries == [
        {"args": [9], "kwargs": {"execution_id": "e1", "node_id": "n"}, "countdown": 2.5, "max_retries": None}
    ]
    # and no directive asks nothing
    tasks._retry_or_done(fake, None)
    assert len(fake.retries) == 1


@pytest.mark.parametrize(
    ("delivery_info", "expected"),
    [({}, False), ({"redelivered": False}, False), ({"redelivered": True}, True)],
)
def test_tasks_a_redelivered_message_is_told_apart(delivery_info, expected):
    # given a task whose message came back (its worker process died) or not
    fake = FakeTask(delivery_info=delivery_info)
    # when asked / then only a redelivered one is (it does not run ahead of its claim again)
    assert tasks._redelivered(fake) is expected


@pytest.mark.parametrize(("task", "deadline"), [("join_batches", False), ("batch_deadline", True)])
def test_tasks_a_batch_join_that_must_wait_schedules_the_node_again(monkeypatch, task, deadline):
    # given a join that answers "run node run 5 again in 3 s"
    joins, scheduled = [], []
    monkeypatch.setattr(
        batches, "join", lambda run_id, deadline=False: joins.append((run_id, deadline)) or RetryLater(5, 3.0)
    )
    monkeypatch.setattr(
        tasks.run_node, "apply_async", lambda args, countdown: scheduled.append((args, countdown))
    )
    # when the join task runs for batch node 4
    getattr(tasks, task)(4)
    # then the join was asked (with the deadline flag of its task) and run_node was scheduled as directed
    assert joins == [(4, deadline)]
    assert scheduled == [([5], 3.0)]


def test_tasks_a_join_with_nothing_left_schedules_nothing(monkeypatch):
    # given a join that is done
    scheduled = []
    monkeypatch.setattr(batches, "join", lambda run_id, deadline=False: None)
    monkeypatch.setattr(tasks.run_node, "apply_async", lambda *args, **kwargs: scheduled.append(args))
    # when the join task runs / then no node task is scheduled
    tasks.join_batches(4)
    assert scheduled == []


def test_tasks_reap_reports_the_pass_to_the_metrics(monkeypatch):
    # given a reaper pass with a result
    passes = []
    monkeypatch.setattr(reaper, "reap", lambda: {"requeued": 2})
    monkeypatch.setattr(tasks.metrics, "reaper_pass", passes.append)
    # when the periodic task runs / then it returns the pass's result and counts it
    assert tasks.reap() == {"requeued": 2}
    assert passes == [{"requeued": 2}]
