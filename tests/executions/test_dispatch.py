"""Publishing tasks by name: result subscriptions only for tasks whose results are read."""

from __future__ import annotations

import json

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
