"""The reaper (celery beat): re-drives from PostgreSQL whatever the broker or a dead worker lost."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from executions import dispatch, transitions
from executions.models import ExecutionStatus, NodeRun, NodeRunStatus, TERMINAL_NODE_STATUSES
from executions.services import node_task_options
from workers.specs import spec_for_version

logger = logging.getLogger(__name__)

ACTIVE = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
LIMIT = 500


def _task_for(node_run: NodeRun) -> str:
    return dispatch.RUN_BATCH if node_run.batch_index is not None else dispatch.RUN_NODE


def _options(node_run: NodeRun) -> dict[str, Any]:
    spec = spec_for_version(node_run.execution.flow_version_id)
    node = spec.nodes.get(node_run.node_id)
    if node is None:
        return {}
    if node_run.batch_index is not None:
        return {"queue": node.queue}
    return node_task_options(node)


def _resend_waiting(stale: Any, now: Any) -> int:
    """Queued runs whose task never arrived (broker lost it, or the enqueue failed after commit)."""
    count = 0
    runs = NodeRun.objects.select_related("execution").filter(
        status=NodeRunStatus.QUEUED, queued_at__lt=stale, execution__status__in=ACTIVE
    )[:LIMIT]
    for run in runs:
        if NodeRun.objects.filter(id=run.id, status=NodeRunStatus.QUEUED, queued_at=run.queued_at).update(
            queued_at=now
        ):
            dispatch.send_now(_task_for(run), run.id, **_options(run))
            count += 1
    runs = NodeRun.objects.select_related("execution").filter(
        status=NodeRunStatus.RETRYING, not_before__lt=stale, execution__status__in=ACTIVE
    )[:LIMIT]
    for run in runs:
        if NodeRun.objects.filter(id=run.id, status=NodeRunStatus.RETRYING, not_before=run.not_before).update(
            not_before=now
        ):
            dispatch.send_now(_task_for(run), run.id, **_options(run))
            count += 1
    return count


def _is_batch_parent(run: NodeRun) -> bool:
    return run.batch_index is None and isinstance(run.input, dict) and "batch_count" in run.input


def _recover_running(stale: Any, now: Any) -> int:
    """Running runs without a heartbeat: the worker died. The attempt fails as lost and a fresh one is queued."""
    count = 0
    runs = NodeRun.objects.select_related("execution").filter(
        status=NodeRunStatus.RUNNING, execution__status=ExecutionStatus.RUNNING
    ).filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale))[:LIMIT]
    for run in runs:
        if run.not_before is not None:
            if run.not_before < stale and NodeRun.objects.filter(
                id=run.id, status=NodeRunStatus.RUNNING, not_before=run.not_before
            ).update(not_before=now):
                dispatch.send_now(dispatch.RESUME_NODE, run.id, queue=_options(run).get("queue"))
                count += 1
            continue
        if _is_batch_parent(run):
            continue
        with transaction.atomic():
            execution = type(run.execution).objects.select_for_update().get(id=run.execution_id)
            if not transitions.node_run_transition(
                run, to=NodeRunStatus.FAILED, expected=(NodeRunStatus.RUNNING,), account_id=execution.account_id,
                error=f"worker lost: no heartbeat for {settings.FLOWRUNNER_STALE_AFTER:g}s", finished_at=now,
            ):
                continue
            again = transitions.node_run_create(
                execution=execution, node_id=run.node_id, batch_index=run.batch_index, attempt=run.attempt + 1,
                step=run.step, input=run.input, task_id=run.task_id,
            )
            task, options = _task_for(again), _options(run)
            transaction.on_commit(lambda t=task, i=again.id, o=options: dispatch.send_now(t, i, **o))
        count += 1
    return count


def _join_orphans() -> int:
    """Batch nodes whose batches are all finished but whose chord callback never came (Redis lost it)."""
    from workers import batches

    count = 0
    parents = NodeRun.objects.filter(
        status=NodeRunStatus.RUNNING, batch_index__isnull=True, execution__status=ExecutionStatus.RUNNING,
        input__has_key="batch_count",
    )[:LIMIT]
    for parent in parents:
        parts = batches.latest_parts(parent)
        if parts and all(p.status in TERMINAL_NODE_STATUSES for p in parts.values()):
            finished_at = max((p.finished_at for p in parts.values() if p.finished_at), default=None)
            # give the chord callback its chance first
            if finished_at and finished_at < timezone.now() - timedelta(seconds=2):
                directive = batches.join(parent.id)
                if directive is not None:
                    dispatch.send_now(dispatch.RUN_NODE, directive.node_run_id, countdown=directive.countdown)
                count += 1
    return count


def reap() -> dict[str, int]:
    """One pass; safe to run concurrently with everything (each step is a compare-and-swap)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.FLOWRUNNER_STALE_AFTER)
    result = {
        "resent": _resend_waiting(stale, now),
        "recovered": _recover_running(stale, now),
        "joined": _join_orphans(),
    }
    if any(result.values()):
        logger.info("reaper: %s", result)
    return result
