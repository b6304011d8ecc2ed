"""Publishing tasks by name: result subscriptions only for tasks whose results are read."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from executions import dispatch


def _capture(monkeypatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        dispatch.current_app, "send_task", lambda name, args, **options: calls.append((name, options))
    )
    return calls


def test_dispatch_node_tasks_are_sent_without_a_result_subscription(monkeypatch):
    # Given a captured broker
    calls = _capture(monkeypatch)
    # When a node task, a resume, a join and a batch deadline are published
    for task in (dispatch.RUN_NODE, dispatch.RESUME_NODE, dispatch.JOIN_BATCHES, dispatch.BATCH_DEADLINE):
        dispatch.send_now(task, 7, queue="q")
    # Then Celery is told their results are ignored (it would otherwise subscribe to each one's result)
    assert [options.get("ignore_result") for _, options in calls] == [True] * 4
    assert all(options["queue"] == "q" for _, options in calls)


def test_dispatch_the_argument_text_is_the_run_id_the_reaper_reads(monkeypatch):
    # Given a captured broker
    calls = _capture(monkeypatch)
    # When a node task is published
    dispatch.send_now(dispatch.RUN_NODE, 42)
    # Then its argsrepr is written out (not left to Celery's saferepr) in the form the reaper's backlog scan reads
    from workers.reaper import _run_ids

    # (kombu's Redis message is JSON with the headers in clear, in json.dumps' default separators)
    message = json.dumps({"headers": {"task": dispatch.RUN_NODE, "argsrepr": calls[0][1]["argsrepr"]}})
    assert _run_ids([message.encode()]) == {42}


def test_dispatch_batch_parts_keep_their_results_for_the_chord(monkeypatch):
    # Given a captured broker
    calls = _capture(monkeypatch)
    # When a batch part is published
    dispatch.send_now(dispatch.RUN_BATCH, 7)
    # Then its result is kept: the chord counts the results to call the join
    assert "ignore_result" not in calls[0][1]


def test_dispatch_a_broker_failure_is_logged_not_raised(monkeypatch, caplog):
    # Given a broker that refuses the publish
    def refuse(name, args, **options):
        raise ConnectionError("broker down")

    monkeypatch.setattr(dispatch.current_app, "send_task", refuse)
    # When a node task is published
    dispatch.send_now(dispatch.RUN_NODE, 7)
    # Then the failure is logged for the reaper to re-drive, not raised into the worker
    assert "could not enqueue flowrunner.run_node(7)" in caplog.text


def test_dispatch_labels_travel_as_kwargs_the_monitors_show(monkeypatch):
    # Given a captured broker
    calls = _capture(monkeypatch)
    # When a node task is published with its execution and node, a countdown, a time limit and a task id
    dispatch.send_now(
        dispatch.RUN_NODE,
        7,
        execution_id="e-1",
        node_id="fetch",
        countdown=2.0,
        time_limit=30.0,
        task_id="t-7",
    )
    # Then the labels are keyword arguments (shown as such) and the options reach Celery unchanged
    _, options = calls[0]
    assert options["kwargs"] == {"execution_id": "e-1", "node_id": "fetch"}
    assert options["kwargsrepr"] == repr({"execution_id": "e-1", "node_id": "fetch"})
    assert (options["countdown"], options["time_limit"], options["task_id"]) == (2.0, 30.0, "t-7")


def test_dispatch_without_labels_or_options_sends_only_what_is_needed(monkeypatch):
    # Given a captured broker / When a bare node task is published
    calls = _capture(monkeypatch)
    dispatch.send_now(dispatch.RUN_NODE, 7)
    # Then no kwargs, queue, countdown, time limit or task id are set
    _, options = calls[0]
    assert set(options) == {"ignore_result", "argsrepr", "kwargsrepr"} and options["kwargsrepr"] == "{}"


@pytest.mark.django_db
def test_dispatch_send_on_commit_publishes_only_once_committed(
    monkeypatch, django_capture_on_commit_callbacks
):
    # Given a captured broker
    calls = _capture(monkeypatch)
    # When a task is sent on commit inside a transaction
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            dispatch.send_on_commit(dispatch.RUN_NODE, 7, queue="q")
            before = list(calls)
    # Then nothing left before the commit, and the task after it, with its options
    assert before == []
    assert [(name, options["queue"]) for name, options in calls] == [(dispatch.RUN_NODE, "q")]


@pytest.mark.django_db
def test_dispatch_revoke_on_commit_skips_empty_ids_and_survives_a_broker_failure(
    monkeypatch, django_capture_on_commit_callbacks, caplog
):
    # Given a broker whose revoke fails
    revoked = []

    def revoke(ids):
        revoked.append(ids)
        raise ConnectionError("broker down")

    monkeypatch.setattr(dispatch.current_app.control, "revoke", revoke)
    # When tasks are revoked on commit (with an empty id among them), and then none at all
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            dispatch.revoke_on_commit(["t-1", "", "t-2"])
            dispatch.revoke_on_commit(["", ""])
    # Then one revoke of the real ids was tried, its failure logged, and nothing was registered for no ids
    assert len(callbacks) == 1
    assert revoked == [["t-1", "t-2"]]
    assert "could not revoke 2 task(s)" in caplog.text
