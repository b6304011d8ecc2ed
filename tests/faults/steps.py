"""Shared pieces of the fault tests: sizes from the environment, a private redis-server, the stack, flows, waits."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.integration.harness import LiveStack
from tests.integration.processes import STARTUP_TIMEOUT, StackError
from tests.services import RedisServer


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# --- sizes and timings (modest defaults for CI; raise them on demand) ----------------------------------------
STALE_AFTER = env_float("FLOWRUNNER_FAULTS_STALE_AFTER", 5.0)  # seconds; the stack's FLOWRUNNER_STALE_AFTER
REAPER_INTERVAL = env_float("FLOWRUNNER_FAULTS_REAPER_INTERVAL", 1.0)  # FLOWRUNNER_REAPER_INTERVAL
BATCH_RUNS = env_int("FLOWRUNNER_FAULTS_BATCH_RUNS", 2)  # parallel_batch executions per fault test
LINEAR_RUNS = env_int("FLOWRUNNER_FAULTS_LINEAR_RUNS", 4)  # linear executions per fault test
ITEMS = env_int("FLOWRUNNER_FAULTS_ITEMS", 12)  # items (= batches of 1) per parallel_batch execution
BATCH_MS = env_int("FLOWRUNNER_FAULTS_BATCH_MS", 300)  # busy script time of one batch
NODE_MS = env_int("FLOWRUNNER_FAULTS_NODE_MS", 200)  # busy script time of one linear node
BLIPS = env_int("FLOWRUNNER_FAULTS_BLIPS", 3)  # rounds of pg_terminate_backend
BURST = env_int("FLOWRUNNER_FAULTS_BURST", 200)  # executions in the load burst
BURST_WORKERS = env_int("FLOWRUNNER_FAULTS_BURST_WORKERS", 2)  # workers (2 processes each) for the burst
JOIN_GRACE = 2.0  # the reaper leaves a finished chord this long to join on its own (workers/reaper.py)

FAULT_STACK_ENV = {
    "FLOWRUNNER_STALE_AFTER": f"{STALE_AFTER:g}s",
    "FLOWRUNNER_REAPER_INTERVAL": f"{REAPER_INTERVAL:g}s",
    "FLOWRUNNER_MAX_STEPS": "200",
}

TERMINAL = frozenset({"completed", "failed", "canceled"})
OPEN_NODE_STATUSES = ("queued", "running", "retrying")


def recovery_bound(work_seconds: float) -> float:
    """Worst case from a fault to the end of every execution: the reaper notices a lost run once it is
    STALE_AFTER old (heartbeat or queue time), on its next pass (REAPER_INTERVAL), a lost chord is joined
    JOIN_GRACE after its last batch, and the work left still has to run; plus a fixed slack for process
    start-up and polling on a loaded CI machine."""
    return STALE_AFTER + REAPER_INTERVAL + JOIN_GRACE + work_seconds + 10.0


# --- flows ---------------------------------------------------------------------------------------------------
BUSY = "const end = Date.now() + {ms}; while (Date.now() < end) {{}}"

BATCH_FLOW = f"""
metadata: {{name: faults batch}}
nodes:
  fan_out:
    type: parallel_batch
    params:
      items: "${{input.numbers}}"
      batch_size: 1
      processor_script: |
        {BUSY.format(ms="shared.busy_ms")}
        return {{seen: input.items}};
    batch: {{max_parallel: 2}}
    next: {{success: done}}
  done:
    type: transform
    params: {{script: "return {{count: input.seen.length}}"}}
"""


def _linear_node(name: str, following: str | None) -> str:
    edge = f"\n    next: {{success: {following}}}" if following else ""
    return f"""
  {name}:
    type: transform
    params:
      script: |
        {BUSY.format(ms="input.busy_ms")}
        return {{trail: (input.trail || []).concat(["{name}"])}};{edge}"""


LINEAR_STEPS = ("a", "b", "c", "d")
LINEAR_FLOW = "metadata: {name: faults linear}\nnodes:" + "".join(
    _linear_node(name, LINEAR_STEPS[i + 1] if i + 1 < len(LINEAR_STEPS) else None)
    for i, name in enumerate(LINEAR_STEPS)
)


def batch_input(k: int, items: int = ITEMS, busy_ms: int = BATCH_MS) -> dict[str, Any]:
    return {"numbers": list(range(k * 1000, k * 1000 + items)), "busy_ms": busy_ms}


def check_batch_result(status: dict[str, Any], expected: list[int]) -> None:
    """Every item once in the joined output: no loss, no duplicate, no failed batch."""
    results = status["results"] or {}
    seen = results.get("seen") or []
    duplicates = {item: n for item, n in Counter(seen).items() if n > 1}
    assert not duplicates, f"items processed more than once: {duplicates}"
    assert sorted(seen) == sorted(expected), f"lost items: {sorted(set(expected) - set(seen))}"
    assert results["failed_batches"] == [] and results["failed_items"] == 0, results
    assert results["batch_count"] == len(expected) and results["count"] == len(expected), results


# --- the database (the test process's own connection; the `live_db` fixture unblocks it) ---------------------
def statuses(ids: Iterable[str]) -> dict[str, str]:
    from executions.models import Execution

    return {
        str(pk): status
        for pk, status in Execution.objects.filter(id__in=list(ids)).values_list("id", "status")
    }


def wait_all(ids: list[str], timeout: float, *, poll: float = 0.2) -> dict[str, str]:
    """Poll PostgreSQL until every execution is terminal; fail listing the ones that are not."""
    deadline = time.monotonic() + timeout
    while True:
        current = statuses(ids)
        pending = {pk: s for pk, s in current.items() if s not in TERMINAL}
        if not pending and len(current) == len(ids):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} execution(s) not terminal after {timeout:.0f}s: {pending}")
        time.sleep(poll)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def open_node_runs(ids: Iterable[str]) -> list[tuple[str, str, Any, str]]:
    """(execution, node_id, batch_index, status) of every node run still queued, running or retrying."""
    from executions.models import NodeRun

    rows = NodeRun.objects.filter(execution_id__in=list(ids), status__in=OPEN_NODE_STATUSES)
    return [
        (str(e), n, b, s)
        for e, n, b, s in rows.values_list("execution_id", "node_id", "batch_index", "status")
    ]


def node_run_rows(execution_id: str) -> list[dict[str, Any]]:
    from executions.models import NodeRun

    return list(
        NodeRun.objects.filter(execution_id=execution_id)
        .order_by("id")
        .values("id", "node_id", "batch_index", "attempt", "status", "error", "worker", "output")
    )


def event_rows(execution_id: str) -> list[tuple[int, str, str]]:
    from executions.models import ExecutionEvent

    return list(
        ExecutionEvent.objects.filter(execution_id=execution_id)
        .order_by("seq")
        .values_list("seq", "type", "node_id")
    )


# --- children's logs -----------------------------------------------------------------------------------------
_REAPER_LINE = re.compile(r"reaper: (\{[^}]*\})")


def log_mark(stack: LiveStack) -> dict[str, int]:
    """Where every child's log ends now (so a later read sees only what follows)."""
    marks = {}
    for child in stack.children.values():
        with contextlib.suppress(OSError):
            marks[str(child.log_path)] = child.log_path.stat().st_size
    return marks


def logs_since(stack: LiveStack, mark: dict[str, int], prefix: str = "worker-") -> str:
    text = []
    for name, child in stack.children.items():
        if not name.startswith(prefix):
            continue
        with contextlib.suppress(OSError), child.log_path.open("rb") as handle:
            handle.seek(mark.get(str(child.log_path), 0))
            text.append(handle.read().decode("utf-8", "replace"))
    return "\n".join(text)


def wait_tasks_done(stack: LiveStack, task_ids: Iterable[str], timeout: float = 60.0) -> None:
    """Wait until a worker logged the end of every task id (node tasks ignore their results: the log is the
    only trace of a task that claimed nothing)."""
    pending = set(task_ids)
    deadline = time.monotonic() + timeout
    while pending:
        text = logs_since(stack, {})
        pending = {
            task_id
            for task_id in pending
            if not any(f"[{task_id}] {end}" in text for end in ("succeeded", "retry", "raised"))
        }
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"tasks {sorted(pending)} did not finish in {timeout:.0f}s")
        time.sleep(0.1)


def reaper_actions(stack: LiveStack, mark: dict[str, int]) -> Counter:
    """What the reaper did since `mark`, summed from its log lines (`reaper: {'resent': 2, ...}`)."""
    total: Counter = Counter()
    for match in _REAPER_LINE.finditer(logs_since(stack, mark)):
        with contextlib.suppress(ValueError, SyntaxError):
            total.update(ast.literal_eval(match.group(1)))
    return total


# --- the stack -----------------------------------------------------------------------------------------------
def make_client_app(url: str):  # noqa: ANN201
    from celery import Celery

    app = Celery("flowrunner-faults-client", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
    )
    return app


@dataclass(eq=False)
class FaultStack(LiveStack):
    """A LiveStack on a private Redis; the test process talks to that broker through its own Celery app
    (the project's app in the test process points at the test settings' Redis). Exclusive: the session's other
    stacks pause their beats while it runs (their reapers would recover the runs its faults leave behind)."""

    redis: RedisServer | None = None
    _client: Any = field(default=None, repr=False)
    exclusive: bool = True

    def client_app(self):  # noqa: ANN201
        if self._client is None:
            self._client = make_client_app(self.env["FLOWRUNNER_REDIS_URL"])
        return self._client

    def control_app(self):  # noqa: ANN201
        return self.client_app()

    def core(self) -> dict[str, int | None]:
        """pid of each process of the stack proper (web, beat, default workers) that is running."""
        names = ["web", "beat", *(f"worker-{name}" for name in self.default_workers)]
        return {name: self.children[name].pid for name in names if self.children[name].alive()}

    def _check_children_alive(self, only: Iterable[str] | None = None) -> None:
        # The harness checks every child ever started; workers a test stopped on purpose are not failures.
        names = (
            list(only)
            if only is not None
            else ["web", "beat", *(f"worker-{n}" for n in self.default_workers)]
        )
        super()._check_children_alive(only=names)

    def close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def wait_for_workers(self, names: Iterable[str], timeout: float = STARTUP_TIMEOUT) -> None:
        wanted = {self.worker_hostname(name) for name in names}
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while True:
            self._check_children_alive(only=[f"worker-{n}" for n in names])
            try:
                replies = self.client_app().control.ping(destination=sorted(wanted), timeout=0.5) or []
            except Exception:
                self.close_client()  # a broker restart leaves dead connections in the client's pool
                replies = []
            seen = {host for reply in replies for host in reply}
            if wanted <= seen:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"workers {sorted(wanted - seen)} did not answer a ping\n{self.logs_report()}"
                )
            time.sleep(0.2)


def max_batch_overlap(execution_id: str) -> int:
    """The most batch parts of the execution that were running at the same moment (started..finished)."""
    from executions.models import NodeRun

    events = []
    rows = NodeRun.objects.filter(
        execution_id=execution_id, batch_index__isnull=False, started_at__isnull=False
    )
    for started, finished in rows.values_list("started_at", "finished_at"):
        events += [(started, 1), (finished, -1)] if finished else [(started, 1)]
    current = best = 0
    for _, delta in sorted(events, key=lambda event: (event[0], event[1])):
        current += delta
        best = max(best, current)
    return best
