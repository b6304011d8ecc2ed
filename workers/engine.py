"""The graph engine: claim a node run, run its kind, then in one transaction record the result, merge the
output into the document, choose the next node by the action rules and enqueue it on commit."""

from __future__ import annotations

import json
import logging
import socket
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.redaction import LazyRedactor
from accounts.selectors import secrets_decrypted
from executions import dispatch, transitions
from executions.events import current_work, locked_execution_work
from executions.models import Execution, ExecutionStatus, NodeRun, NodeRunStatus
from executions.services import enqueue_node_run
from flows.dsl.spec import FlowSpec, NodeSpec
from flows.nodes.registry import get_kind
from workers import heartbeat
from workers.context import EngineContext
from workers.outcomes import Outcome, RetryLater, execute, output_problem
from workers.specs import longest_path, progress_percent, spec_for_version

logger = logging.getLogger(__name__)

CLAIMABLE = (NodeRunStatus.QUEUED, NodeRunStatus.RETRYING)
HOSTNAME = socket.gethostname()


# --- loading ------------------------------------------------------------------------------------------------


def lock_execution(execution_id: Any) -> Execution:
    return Execution.objects.select_for_update().get(id=execution_id)


def lock_run(node_run_id: int) -> NodeRun | None:
    """The node run and its execution, the execution's row locked until commit — one query.

    Every status change of an execution's node runs happens under this lock; the node run's own columns may
    predate a change made while we waited, which is why its status changes are still compare-and-swap.
    """
    return (
        NodeRun.objects.select_related("execution")
        .select_for_update(of=("execution",))
        .filter(id=node_run_id)
        .first()
    )


def save_fields(execution: Execution, **fields: Any) -> None:
    """Change execution columns: collected into the locked execution's one UPDATE when inside its work."""
    work = current_work(execution.id)
    if work is not None:
        work.set(**fields)
        return
    Execution.objects.filter(id=execution.id).update(**fields)
    for name, value in fields.items():
        setattr(execution, name, value)


def make_context(execution: Execution, node: NodeSpec, node_run: NodeRun) -> EngineContext:
    account_id = execution.account_id
    return EngineContext(
        node=node,
        document=json.loads(json.dumps(execution.data or {})),
        results=execution.node_outputs or {},
        # `node_id`, `attempt` and `batch_index` go beyond DESIGN's {id, flow_id, account_id}: a script can
        # then behave differently on a retry (and tests can make a node fail exactly N times).
        execution={
            "id": str(execution.id),
            "flow_id": execution.flow_id,
            "account_id": str(execution.account_id),
            "node_id": node.id,
            "attempt": node_run.attempt,
            "batch_index": node_run.batch_index,
        },
        load_secrets=lambda: secrets_decrypted(account=account_id),
        timeout=node.timeout or _param_timeout(node),
    )


def _param_timeout(node: NodeSpec) -> float | None:
    from flows.dsl.durations import DurationError, parse_duration

    raw = node.params.get("timeout") if isinstance(node.params, dict) else None
    if raw is None or (isinstance(raw, str) and "${" in raw):
        return None
    try:
        return parse_duration(raw)
    except DurationError:
        return None


def redactor_for(execution: Execution) -> LazyRedactor:
    account_id = execution.account_id
    return LazyRedactor(lambda: secrets_decrypted(account=account_id).values())


# --- claim --------------------------------------------------------------------------------------------------


def interrupted(node_run: NodeRun, task_id: str) -> bool:
    """Is `node_run` running under this very Celery task, which claimed it and never finished it? A task
    retried after a database error, or redelivered (same id) after its worker process died, finds its own
    claim: without handling it, the run would sit `running` until the reaper's STALE_AFTER."""
    return bool(task_id) and node_run.status == NodeRunStatus.RUNNING and node_run.task_id == task_id


def requeue_interrupted(node_run: NodeRun) -> None:
    """Fail the interrupted attempt as lost and queue the next one at once (bounded like the reaper's)."""
    from workers import reaper

    reaper.requeue_lost(node_run, reason="its task was interrupted (database error or worker process death)")


def claim(node_run_id: int, *, task_id: str = "", hostname: str = "") -> tuple[NodeRun, Execution] | None:
    """queued|retrying → running, and the execution to running; None when someone else has it (or canceled)."""
    with transaction.atomic():
        node_run = lock_run(node_run_id)
        if node_run is not None and interrupted(node_run, task_id):
            requeue_interrupted(node_run)
            return None
        if node_run is None or node_run.status not in CLAIMABLE:
            return None
        execution = node_run.execution
        with locked_execution_work(execution):
            return _claim_locked(node_run, execution, task_id=task_id, hostname=hostname)


def mark_running(node_run: NodeRun, execution: Execution, *, task_id: str, hostname: str, now: Any) -> bool:
    """The claim itself (queued|retrying → running, with this worker and task): False if another got it."""
    return transitions.node_run_transition(
        node_run,
        to=NodeRunStatus.RUNNING,
        expected=CLAIMABLE,
        account_id=execution.account_id,
        started_at=now,
        heartbeat_at=now,
        worker=hostname or HOSTNAME,
        task_id=task_id or node_run.task_id,
    )


def _claim_locked(
    node_run: NodeRun, execution: Execution, *, task_id: str, hostname: str
) -> tuple[NodeRun, Execution] | None:
    now = timezone.now()
    if execution.status not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING):
        transitions.node_runs_cancel([node_run], account_id=execution.account_id, error="execution ended")
        return None
    if not mark_running(node_run, execution, task_id=task_id, hostname=hostname, now=now):
        return None
    if node_run.batch_index is None:
        if execution.status == ExecutionStatus.QUEUED:
            transitions.execution_transition(
                execution,
                to=ExecutionStatus.RUNNING,
                expected=(ExecutionStatus.QUEUED,),
                started_at=now,
                current_node=node_run.node_id,
            )
        else:
            transitions.execution_progress(execution, current_node=node_run.node_id)
    return node_run, execution


# --- run ----------------------------------------------------------------------------------------------------


def run_node(node_run_id: int, *, task_id: str = "", hostname: str = "") -> RetryLater | None:
    """The body of the `flowrunner.run_node` task."""
    claimed = claim(node_run_id, task_id=task_id, hostname=hostname)
    if claimed is None:
        return None
    node_run, execution = claimed
    spec = spec_for_version(execution.flow_version_id)
    node = spec.nodes[node_run.node_id]
    kind = get_kind(node.type)
    ctx = make_context(execution, node, node_run)
    with heartbeat.beating(node_run.id):
        if kind.is_batch:
            from workers import batches

            return batches.start(node_run, execution, spec, node, kind, ctx)
        outcome = execute(kind.run, ctx)
    outcome.output = ctx.redacted_output(outcome.output)
    return finish(node_run.id, outcome, redactor=ctx.redactor)


def resume_node(node_run_id: int) -> None:
    """A wait/delay node's countdown has passed: finish it with the output it stored."""
    node_run = NodeRun.objects.filter(id=node_run_id, status=NodeRunStatus.RUNNING).first()
    if node_run is None:
        return
    execution = Execution.objects.select_related("account").get(id=node_run.execution_id)
    finish(
        node_run.id, Outcome(ok=True, output=node_run.output), redactor=redactor_for(execution), resuming=True
    )


# --- finish -------------------------------------------------------------------------------------------------


def finish(
    node_run_id: int, outcome: Outcome, *, redactor: LazyRedactor, resuming: bool = False
) -> RetryLater | None:
    """Record a node's outcome and move the execution on, all in one transaction."""
    with transaction.atomic():
        node_run = lock_run(node_run_id)
        if node_run is None:
            return None
        execution = node_run.execution
        with locked_execution_work(execution):
            return _finish_locked(node_run, execution, outcome, redactor=redactor, resuming=resuming)


def _finish_locked(
    node_run: NodeRun, execution: Execution, outcome: Outcome, *, redactor: LazyRedactor, resuming: bool
) -> RetryLater | None:
    for entry in outcome.logs:
        transitions.record_log(
            execution_id=execution.id,
            account_id=execution.account_id,
            node_id=node_run.node_id,
            level=entry.level,
            message=entry.message,
            data=entry.data,
        )
    if node_run.status != NodeRunStatus.RUNNING:
        return None  # canceled (or finished by someone else) meanwhile: the result is discarded
    if execution.status != ExecutionStatus.RUNNING:
        transitions.node_runs_cancel([node_run], account_id=execution.account_id, error="execution ended")
        return None
    spec = spec_for_version(execution.flow_version_id)
    node = spec.nodes[node_run.node_id]
    if outcome.ok and outcome.defer_seconds and not resuming:
        return _defer(node_run, execution, node, outcome)
    if outcome.ok:
        problem = output_problem(outcome.output)
        if problem is not None:
            outcome = Outcome(ok=False, error=problem, error_type="output_too_large", retryable=False)
    if outcome.ok:
        return _succeed(node_run, execution, spec, node, outcome, redactor)
    return _fail(node_run, execution, spec, node, outcome, redactor)


# As for JSON request bodies and flow YAML: deeper values exhaust Python's stack in redaction and copies.
def _defer(node_run: NodeRun, execution: Execution, node: NodeSpec, outcome: Outcome) -> None:
    wake = timezone.now() + timedelta(seconds=outcome.defer_seconds)
    NodeRun.objects.filter(id=node_run.id).update(
        not_before=wake, output=outcome.output, heartbeat_at=timezone.now()
    )
    dispatch.send_on_commit(
        dispatch.RESUME_NODE, node_run.id, countdown=outcome.defer_seconds, queue=node.queue
    )
    return None


def merge_output(document: dict[str, Any], output: Any) -> dict[str, Any]:
    """Objects merge into the document's top level (later wins); any other value is stored under `result`."""
    if isinstance(output, dict):
        document.update(output)
    elif output is not None:
        document["result"] = output
    return document


def _succeed(node_run, execution, spec, node, outcome, redactor) -> None:
    now = timezone.now()
    if not transitions.node_run_transition(
        node_run,
        to=NodeRunStatus.SUCCEEDED,
        expected=(NodeRunStatus.RUNNING,),
        account_id=execution.account_id,
        action=outcome.action,
        output=outcome.output,
        finished_at=now,
    ):
        return None  # someone else ended this run (cancel, reaper) while we waited for the lock
    execution.data = merge_output(dict(execution.data or {}), outcome.output)
    outputs = dict(execution.node_outputs or {})
    outputs[node.id] = outcome.output
    execution.node_outputs = outputs
    target = node.edge(outcome.action)
    _advance(execution, spec, target, redactor)


def schedule_retry(
    node_run: NodeRun, execution: Execution, outcome: Outcome, delay: float
) -> RetryLater | None:
    """Fail this attempt and create the next one (status retrying, `not_before` = now + delay) for Celery's
    retry to run: a node and a batch part retry the same way. None when the attempt was already ended."""
    now = timezone.now()
    if not transitions.node_run_transition(
        node_run,
        to=NodeRunStatus.FAILED,
        expected=(NodeRunStatus.RUNNING,),
        account_id=execution.account_id,
        action=outcome.action,
        error=outcome.error,
        finished_at=now,
    ):
        return None
    again = transitions.node_run_create(
        execution=execution,
        status=NodeRunStatus.RETRYING,
        node_id=node_run.node_id,
        batch_index=node_run.batch_index,
        attempt=node_run.attempt + 1,
        step=node_run.step,
        input=node_run.input,
        task_id=node_run.task_id,
        not_before=now + timedelta(seconds=delay),
    )
    return RetryLater(again.id, delay)


def _fail(node_run, execution, spec, node, outcome, redactor) -> RetryLater | None:
    now = timezone.now()
    outcome.action = "timeout" if outcome.timed_out else "error"
    retry = node.retry
    if outcome.retryable and retry is not None and node_run.attempt <= retry.max_retries:
        delay = retry.delay(node_run.attempt)
        return schedule_retry(node_run, execution, outcome, delay)
    if not transitions.node_run_transition(
        node_run,
        to=NodeRunStatus.TIMED_OUT if outcome.timed_out else NodeRunStatus.FAILED,
        expected=(NodeRunStatus.RUNNING,),
        account_id=execution.account_id,
        action=outcome.action,
        error=outcome.error,
        finished_at=now,
    ):
        return None
    target = node.next.get(outcome.action)
    if target is None and outcome.timed_out:
        target = node.next.get("error")
    if target is None:
        target = node.next.get("default")
    if target is None:
        message = f"node '{node.id}' failed: {outcome.error}"
        _end(execution, ExecutionStatus.FAILED, redactor, error=redactor.text(message))
        return None
    # a failed batch join still carries its counts, so an error/timeout handler can see what finished
    execution.data = merge_output(dict(execution.data or {}), outcome.output)
    execution.data["error"] = {
        "node_id": node.id,
        "message": outcome.error,
        "type": outcome.error_type,
        "attempts": node_run.attempt,
    }
    _advance(execution, spec, target, redactor)
    return None


def _advance(execution: Execution, spec: FlowSpec, target: str | None, redactor: LazyRedactor) -> None:
    """Create and enqueue the next node run, or end the execution when there is no next node."""
    if target is None:
        _end(execution, ExecutionStatus.COMPLETED, redactor)
        return
    if execution.steps >= settings.FLOWRUNNER_MAX_STEPS:
        _end(
            execution,
            ExecutionStatus.FAILED,
            redactor,
            error=f"step limit of {settings.FLOWRUNNER_MAX_STEPS} node runs exceeded (a loop that never ends?)",
        )
        return
    save_fields(
        execution, data=execution.data, node_outputs=execution.node_outputs, steps=execution.steps + 1
    )
    next_run = transitions.node_run_create(execution=execution, node_id=target, step=execution.steps)
    done = execution.steps - 1
    progress = progress_percent(done, longest_path(execution.flow_version_id, target))
    # No redaction while running: the snapshot's results are null until the end and its input is the caller's.
    transitions.execution_progress(execution, progress=progress)
    enqueue_node_run(next_run, spec.nodes[target])


def _end(execution: Execution, status: str, redactor: LazyRedactor, *, error: str | None = None) -> None:
    fields: dict[str, Any] = {"data": execution.data, "node_outputs": execution.node_outputs, "error": error}
    if status == ExecutionStatus.COMPLETED:
        fields["results"] = execution.data
    transitions.execution_transition(
        execution, to=status, expected=(ExecutionStatus.RUNNING,), redact=redactor.data, **fields
    )
