"""Celery's own tooling on a real worker: task events (what Flower and `celery events` show) and
`celery inspect active` name a node task with its execution and node ids."""

from __future__ import annotations

import ast
import threading
import time
import uuid

from tests.integration.api_steps import create_flow, start_run, wait_for

QUEUE = f"tooling-{uuid.uuid4().hex[:6]}"
# `slow` keeps its task active for a few seconds, long enough for `celery inspect active` to see it.
FLOW = f"""
metadata: {{name: watched}}
nodes:
  fetch:
    type: transform
    queue: {QUEUE}
    params: {{script: "return {{a: 1}}"}}
    next: {{success: slow}}
  slow:
    type: transform
    queue: {QUEUE}
    params: {{script: "const t = Date.now(); while (Date.now() - t < 6000) {{}} return {{b: 2}}"}}
"""


class EventLog:
    """Celery task events received by the test process (the way Flower receives them), in a thread."""

    def __init__(self, app) -> None:
        self.app = app
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.receiver = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={"*": self.events.append})
            self.ready.set()
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventLog:
        self.thread.start()
        assert self.ready.wait(10)
        time.sleep(0.5)  # the receiver's queue is bound once capture() starts consuming
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.should_stop = True
        self.thread.join(5)

    def of(self, event_type: str, task_name: str | None = None) -> list[dict]:
        return [
            event
            for event in list(self.events)
            if event["type"] == event_type and (task_name is None or event.get("name") == task_name)
        ]


def _inspect_active(app, worker: str) -> list[dict]:
    """What `celery -A flowrunner inspect active -d <worker>` prints, asked through the same control API."""
    replies = app.control.inspect(destination=[worker], timeout=2).active() or {}
    return replies.get(worker, [])


def test_task_events_and_inspect_show_node_tasks_with_their_ids(stack, live_api):
    from flowrunner.celery import app

    # (a script may run 30 s there, so the slow node stays active long enough on a loaded machine)
    stack.start_worker(
        "wt", [QUEUE], default_queues=False, concurrency=1, env={"FLOWRUNNER_SCRIPT_TIMEOUT": "30s"}
    )
    worker = stack.worker_hostname("wt")
    try:
        with EventLog(app) as log:
            # Given a run of a two-node flow on that worker
            execution_id = start_run(live_api, create_flow(live_api, FLOW))
            # When its slow node is running, `celery inspect active` is asked
            active: list[dict] = []
            deadline = time.monotonic() + 20
            while not active and time.monotonic() < deadline:
                active = [
                    task for task in _inspect_active(app, worker) if task["name"] == "flowrunner.run_node"
                ]
            assert wait_for(live_api, execution_id)["status"] == "completed"
            time.sleep(1)  # the last events are published as the task returns
    finally:
        stack.stop_worker("wt")
    # Then inspect shows the active node task by name, its kwargs naming the execution and the node
    assert active, "celery inspect active never showed the running node task"
    # (usually `slow`; on a quick poll `fetch`, the first node, is caught while it runs)
    assert active[0]["kwargs"]["execution_id"] == execution_id
    assert active[0]["kwargs"]["node_id"] in {"fetch", "slow"}
    assert active[0]["args"][0] > 0  # the node run's id, the task's only argument
    # And the events show each node task sent, received, started and succeeded, with the same ids
    received = {
        ast.literal_eval(event["kwargs"])["node_id"]: event
        for event in log.of("task-received", "flowrunner.run_node")
        if execution_id in event["kwargs"]
    }
    node_events = [(e["type"], e.get("kwargs")) for e in log.events if e.get("name") == "flowrunner.run_node"]
    assert set(received) == {"fetch", "slow"}, node_events
    assert all(event["hostname"] == worker for event in received.values())
    uuids = {event["uuid"] for event in received.values()}
    for event_type in ("task-sent", "task-started", "task-succeeded"):
        assert uuids <= {event["uuid"] for event in log.of(event_type)}, event_type
