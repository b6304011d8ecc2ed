"""How a node run becomes a Celery task: its queue, its hard time limit, the document it may carry to run ahead of
its claim, and its enqueue on commit."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from core.durations import DurationError, parse_duration
from executions import dispatch
from executions.models import Execution, NodeRun
from flows.dsl.spec import NodeSpec
from flows.nodes.registry import get_kind

# The worker bounds a node's own work by its timeout; the task's hard limit, this much later, only stops a
# process that ignored it (the attempt is then lost and run again like any dead worker's).
HARD_LIMIT_GRACE = 30.0


CONTEXT = "context"  # the keyword argument of a node task that carries it


def node_timeout(node: NodeSpec) -> float | None:
    """The node's `timeout`, else a literal `params.timeout` (an expression there is the kind's business)."""
    if node.timeout:
        return node.timeout
    raw = node.params.get("timeout") if isinstance(node.params, dict) else None
    if raw is None or (isinstance(raw, str) and "${" in raw):
        return None
    try:
        return parse_duration(raw)
    except DurationError:
        return None


def context_bytes(node: NodeSpec, *, parts: bool = False) -> int:
    """How big a document `node`'s task (with `parts`, each of its batch parts' tasks) may carry to run ahead of
    its claim (0: it is claimed first).

    Only pure kinds, whose run changes nothing but its own result, may run before their claim: a task that
    turns out not to own the run (a duplicate message, a canceled execution) has then done no harm. And only
    when their scripts' time limit is well under STALE_AFTER: a run ahead of its claim is still `queued` in
    PostgreSQL, without a heartbeat, so the reaper must never wait on one for long.
    """
    kind = get_kind(node.type)
    if not settings.FLOWRUNNER_TASK_CONTEXT_BYTES or not (kind.parts_pure if parts else kind.pure):
        return 0
    bound = settings.FLOWRUNNER_SCRIPT_TIMEOUT
    own = node_timeout(node)
    if own:
        bound = min(bound, own)
    if bound >= settings.FLOWRUNNER_STALE_AFTER / 2:
        return 0
    return int(settings.FLOWRUNNER_TASK_CONTEXT_BYTES)


def carries_context(execution: Execution, node: NodeSpec) -> bool:
    """Whether a new execution's first node task carries its document to run ahead of its claim: a pure node
    whose document fits in its task."""
    limit = context_bytes(node)
    return bool(limit) and len(json.dumps(execution.data)) + len(json.dumps(execution.node_outputs)) <= limit


def start_context(execution: Execution, node: NodeSpec, *, has_secrets: bool) -> dict[str, Any]:
    """The context of a first node task that `carries_context`: the execution as a claim would return it."""
    return {
        "node_id": node.id,
        "execution": {
            "id": str(execution.id),
            "account_id": str(execution.account_id),
            "flow_id": execution.flow_id,
            "flow_version_id": execution.flow_version_id,
            "data": execution.data,
            "node_outputs": execution.node_outputs,
            "steps": execution.steps,
            "progress": execution.progress,
            "has_secrets": has_secrets,
        },
    }


def node_task_options(node: NodeSpec) -> dict[str, Any]:
    """Queue and hard time limit of a node's task (a batch node's timeout is a deadline, not a task limit)."""
    kind = get_kind(node.type)
    options: dict[str, Any] = {"queue": node.queue}
    if node.timeout and kind is not None and not kind.is_batch and node.type not in ("wait", "delay"):
        options["time_limit"] = node.timeout + HARD_LIMIT_GRACE
    return options


def enqueue_node_run(
    node_run: NodeRun,
    node: NodeSpec,
    *,
    countdown: float | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Publish the run's task once the transaction commits; with `context` (the run's own task id set) the node
    runs ahead of its claim."""
    dispatch.send_on_commit(
        dispatch.RUN_NODE, node_run.id, countdown=countdown, execution_id=node_run.execution_id,
        node_id=node_run.node_id, task_id=node_run.task_id or None,
        extra={CONTEXT: context} if context else None, **node_task_options(node),
    )  # fmt: skip
