"""Parallel batch nodes: a Celery chord over batch tasks (at most `max_parallel` lanes, each a chain), per-batch
retries, a join that PostgreSQL can redo when the chord's state is lost, and a deadline that revokes stragglers."""

from __future__ import annotations

import uuid
from typing import Any

from celery import chain, chord, current_app, group
from django.db import transaction
from django.utils import timezone

from executions import dispatch, transitions
from executions.events import locked_execution_work
from executions.models import TERMINAL_NODE_STATUSES, ExecutionStatus, NodeRun, NodeRunStatus
from flows.dsl.spec import FlowSpec, NodeSpec
from flows.nodes.registry import get_kind
from workers import heartbeat
from workers.engine import (
    CLAIMABLE,
    Outcome,
    RetryLater,
    execute,
    finish,
    interrupted,
    lock_execution,
    make_context,
    mark_running,
    redactor_for,
    requeue_interrupted,
    schedule_retry,
)
from workers.specs import longest_path, progress_percent, spec_for_version

BATCH_DEADLINE = "flowrunner.batch_deadline"


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def lane_count(node: NodeSpec, batch_count: int) -> int:
    """How many batches may run at once: `batch.max_parallel` wins over `params.max_parallel`."""
    if node.batch and node.batch.strategy == "serial":
        return 1
    limit = (node.batch.max_parallel if node.batch else None) or node.params.get("max_parallel")
    try:
        limit = int(limit) if limit else batch_count
    except (TypeError, ValueError):
        limit = batch_count
    return max(1, min(limit, batch_count))


def start(parent: NodeRun, execution, spec: FlowSpec, node: NodeSpec, kind, ctx) -> RetryLater | None:
    """Resolve the items, create one NodeRun per batch and launch the chord on commit."""
    items_outcome = execute(kind.items, ctx)
    if not items_outcome.ok:
        return finish(parent.id, items_outcome, redactor=ctx.redactor)
    items = items_outcome.output
    try:
        size = max(1, int(ctx.render(node.params.get("batch_size", 1))))
    except (TypeError, ValueError):
        size = 1
    batches = _chunks(list(items), size)
    lanes = lane_count(node, len(batches)) if batches else 0
    with transaction.atomic():
        execution = lock_execution(execution.id)
        with locked_execution_work(execution):
            parent.refresh_from_db(fields=["status"])
            if parent.status != NodeRunStatus.RUNNING or execution.status != ExecutionStatus.RUNNING:
                return None
            parts = [
                transitions.node_run_create(
                    execution=execution,
                    node_id=node.id,
                    batch_index=index,
                    step=parent.step,
                    input={"items": chunk},
                    task_id=str(uuid.uuid4()),
                )
                for index, chunk in enumerate(batches)
            ]
            NodeRun.objects.filter(id=parent.id).update(
                input={"batch_count": len(batches), "item_count": len(items), "lanes": lanes}
            )
            if parts:
                transaction.on_commit(lambda: _launch_chord(parent.id, parts, lanes, node))
                if node.timeout:
                    dispatch.send_on_commit(
                        BATCH_DEADLINE, parent.id, countdown=node.timeout, queue=node.queue
                    )
    if not parts:
        return join(parent.id)
    return None


def _launch_chord(parent_id: int, parts: list[NodeRun], lanes: int, node: NodeSpec) -> None:
    signatures = [
        current_app.signature(
            dispatch.RUN_BATCH, args=[part.id], immutable=True, queue=node.queue, task_id=part.task_id
        )
        for part in parts
    ]
    header = []
    for lane in range(lanes):
        members = signatures[lane::lanes]
        header.append(chain(*members) if len(members) > 1 else members[0])
    body = current_app.signature(dispatch.JOIN_BATCHES, args=[parent_id], immutable=True, queue=node.queue)
    try:
        chord(group(header), body).apply_async()
    except Exception:  # the parts are queued rows: the reaper sends them one by one and joins from PostgreSQL
        import logging

        logging.getLogger(__name__).warning(
            "could not launch the chord of node run %s", parent_id, exc_info=True
        )


def run_batch(part_id: int, *, task_id: str = "", hostname: str = "") -> RetryLater | None:
    """The body of `flowrunner.run_batch`: claim one batch, run the processor script, record the result."""
    with transaction.atomic():
        part = NodeRun.objects.filter(id=part_id).first()
        if part is not None and interrupted(part, task_id):
            requeue_interrupted(part)
            return None
        if part is None or part.status not in CLAIMABLE:
            return None
        execution = lock_execution(part.execution_id)
        with locked_execution_work(execution):
            parent = _parent_of(part)
            if (
                execution.status != ExecutionStatus.RUNNING
                or parent is None
                or parent.status != NodeRunStatus.RUNNING
            ):
                transitions.node_runs_cancel(
                    [part], account_id=execution.account_id, error="batch node ended"
                )
                return None
            now = timezone.now()
            if not mark_running(part, execution, task_id=task_id, hostname=hostname, now=now):
                return None
    spec = spec_for_version(execution.flow_version_id)
    node = spec.nodes[part.node_id]
    kind = get_kind(node.type)
    ctx = make_context(execution, node, part)
    batch_count = (parent.input or {}).get("batch_count", 1)
    with heartbeat.beating(part.id):
        outcome = execute(
            lambda c: kind.process(c, (part.input or {}).get("items", []), part.batch_index, batch_count), ctx
        )
    outcome.output = ctx.redacted_output(outcome.output)
    return finish_batch(part.id, outcome, redactor=ctx.redactor)


def _parent_of(part: NodeRun) -> NodeRun | None:
    return (
        NodeRun.objects.filter(
            execution_id=part.execution_id, node_id=part.node_id, step=part.step, batch_index__isnull=True
        )
        .order_by("-id")
        .first()
    )


def finish_batch(part_id: int, outcome: Outcome, *, redactor) -> RetryLater | None:

    with transaction.atomic():
        part = NodeRun.objects.get(id=part_id)
        execution = lock_execution(part.execution_id)
        with locked_execution_work(execution):
            part.refresh_from_db(fields=["status"])
            for entry in outcome.logs:
                transitions.record_log(
                    execution_id=execution.id,
                    account_id=execution.account_id,
                    node_id=part.node_id,
                    level=entry.level,
                    message=entry.message,
                    data=entry.data,
                )
            if part.status != NodeRunStatus.RUNNING:
                return None
            spec = spec_for_version(execution.flow_version_id)
            node = spec.nodes[part.node_id]
            now = timezone.now()
            retry = node.retry
            if outcome.ok:
                transitions.node_run_transition(
                    part,
                    to=NodeRunStatus.SUCCEEDED,
                    expected=(NodeRunStatus.RUNNING,),
                    account_id=execution.account_id,
                    output=outcome.output,
                    action="success",
                    finished_at=now,
                )
            elif outcome.retryable and retry is not None and part.attempt <= retry.max_retries:
                delay = retry.delay(part.attempt)
                return schedule_retry(part, execution, outcome, delay)
            else:
                transitions.node_run_transition(
                    part,
                    to=NodeRunStatus.TIMED_OUT if outcome.timed_out else NodeRunStatus.FAILED,
                    expected=(NodeRunStatus.RUNNING,),
                    account_id=execution.account_id,
                    error=outcome.error,
                    action=outcome.action,
                    finished_at=now,
                )
            parent = _parent_of(part)
            if parent is not None and execution.status == ExecutionStatus.RUNNING:
                _touch_next_in_lane(part, parent)
                _batch_progress(execution, parent, redactor)
    return None


def _touch_next_in_lane(part: NodeRun, parent: NodeRun) -> None:
    """The next batch of this chain is about to be published: restart its staleness clock for the reaper."""
    lanes = (parent.input or {}).get("lanes") or 1
    NodeRun.objects.filter(
        execution_id=part.execution_id,
        node_id=part.node_id,
        step=part.step,
        batch_index=part.batch_index + lanes,
        status=NodeRunStatus.QUEUED,
    ).update(queued_at=timezone.now())


def latest_parts(parent: NodeRun) -> dict[int, NodeRun]:
    """The latest attempt of every batch of this activation of the node."""
    latest: dict[int, NodeRun] = {}
    for part in NodeRun.objects.filter(
        execution_id=parent.execution_id, node_id=parent.node_id, step=parent.step, batch_index__isnull=False
    ).order_by("batch_index", "attempt", "id"):
        latest[part.batch_index] = part
    return latest


def _batch_progress(execution, parent: NodeRun, redactor) -> None:
    parts = latest_parts(parent)
    count = len(parts) or 1
    finished = sum(1 for p in parts.values() if p.status in TERMINAL_NODE_STATUSES)
    done = (parent.step - 1) + finished / count
    remaining = longest_path(execution.flow_version_id, parent.node_id) - finished / count
    transitions.execution_progress(execution, progress=progress_percent(done, remaining))


def join(parent_id: int, *, deadline: bool = False) -> RetryLater | None:
    """Join the batches of a batch node (chord callback, reaper or deadline).

    Idempotent: the parent's compare-and-swap from running wins once.
    """
    parent = NodeRun.objects.filter(id=parent_id, status=NodeRunStatus.RUNNING).first()
    if parent is None:
        return None
    with transaction.atomic():
        execution = lock_execution(parent.execution_id)
        with locked_execution_work(execution):
            parts = latest_parts(parent)
            unfinished = [p for p in parts.values() if p.status not in TERMINAL_NODE_STATUSES]
            if unfinished and not deadline:
                return None  # a chord fired early or a reaper pass raced a batch: the last batch will be joined later
            if unfinished:
                moved = transitions.node_runs_cancel(
                    unfinished,
                    account_id=execution.account_id,
                    status=NodeRunStatus.TIMED_OUT,
                    error="batch node deadline passed",
                )
                dispatch.revoke_on_commit([p.task_id for p in moved])
    spec = spec_for_version(execution.flow_version_id)
    node = spec.nodes[parent.node_id]
    kind = get_kind(node.type)
    parts = latest_parts(parent)
    outputs = [(i, p.output) for i, p in sorted(parts.items()) if p.status == NodeRunStatus.SUCCEEDED]
    failed = [i for i, p in sorted(parts.items()) if p.status != NodeRunStatus.SUCCEEDED]
    failed_items = sum(len((parts[i].input or {}).get("items", [])) for i in failed)
    output = kind.join_batches(outputs, failed, failed_items, len(parts))
    redactor = redactor_for(execution)
    if deadline:
        outcome = Outcome(
            ok=False,
            output=output,
            error=f"batch node '{node.id}' passed its deadline of "
            f"{node.timeout:g}s with {len(failed)} batch(es) unfinished or failed",
            error_type="timeout",
            retryable=False,
            timed_out=True,
            action="timeout",
        )
    elif outputs or not parts:
        outcome = Outcome(ok=True, output=output, action="success")
    else:
        errors = "; ".join(sorted({p.error for p in parts.values() if p.error}))[:500]
        outcome = Outcome(
            ok=False,
            output=output,
            error=f"all {len(parts)} batches failed: {errors}",
            error_type="batch_failed",
            retryable=False,
        )
    return finish(parent.id, outcome, redactor=redactor)


def deadline(parent_id: int) -> None:
    join(parent_id, deadline=True)
