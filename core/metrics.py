"""Prometheus metric definitions and the cheap calls that update them (in-process counters, no I/O)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram, disable_created_metrics

# A `_created` timestamp series per counter and histogram doubles what is stored and says nothing useful here.
disable_created_metrics()

TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})

# Node runs last from milliseconds (a log node) to minutes (an HTTP call behind a retry); requests from
# sub-millisecond to the pool's busy wait.
NODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

EXECUTIONS_STARTED = Counter(
    "flowrunner_executions_started",
    "Executions created, counted once committed, by what started them (api, retry, schedule, hook).",
    ["trigger"],
)
EXECUTIONS_FINISHED = Counter(
    "flowrunner_executions_finished",
    "Executions that ended, by final status (completed, failed, canceled).",
    ["status"],
)
NODE_RUN_SECONDS = Histogram(
    "flowrunner_node_run_duration_seconds",
    "A node run's time in a worker, from its claim to its recorded finish, by node kind and outcome "
    "(succeeded, failed, timed_out, retried, deferred, discarded).",
    ["kind", "outcome"],
    buckets=NODE_BUCKETS,
)
REAPER_ACTIONS = Counter(
    "flowrunner_reaper_actions",
    "What the reaper re-drove: resent (lost messages), recovered (dead workers' runs), joined (lost chord "
    "callbacks), database_errors (passes cut short).",
    ["action"],
)
WS_FRAMES_SENT = Counter("flowrunner_websocket_frames_sent", "WebSocket frames written to clients.")
HTTP_SECONDS = Histogram(
    "flowrunner_http_request_duration_seconds",
    "HTTP request latency in the web process, by method, route pattern and status code.",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)

# What `flowrunner_finish` answered, as the node run's outcome label.
_FINISH_OUTCOMES = {"retry": "retried", "deferred": "deferred", "stale": "discarded", "ended": "discarded"}


def execution_started(trigger: str) -> None:
    EXECUTIONS_STARTED.labels(trigger).inc()


def execution_finished(status: str) -> None:
    EXECUTIONS_FINISHED.labels(status).inc()


def node_run_finished(*, kind: str, decision: dict[str, Any], result: dict[str, Any], started: float) -> None:
    """A node run's finish as the engine decided it (`decision`) and the database answered it (`result`):
    its duration, and the end of its execution when this finish ended it. `started` is a monotonic time."""
    outcome = result.get("outcome")
    label = _FINISH_OUTCOMES.get(outcome) or decision.get("status") or "unknown"
    NODE_RUN_SECONDS.labels(kind, label).observe(time.monotonic() - started)
    status = result.get("status")
    # "done" is answered only while the execution was running: a terminal status now means this finish ended it.
    if outcome == "done" and result.get("parent_id") is None and status in TERMINAL_STATUSES:
        EXECUTIONS_FINISHED.labels(status).inc()


def reaper_pass(result: dict[str, int]) -> None:
    for action, count in result.items():
        if count:
            REAPER_ACTIONS.labels(action).inc(count)


def frame_sent(count: int = 1) -> None:
    WS_FRAMES_SENT.inc(count)


def request_finished(*, method: str, route: str, status: int, seconds: float) -> None:
    HTTP_SECONDS.labels(method, route, str(status)).observe(seconds)
