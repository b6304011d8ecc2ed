"""Pure nodes run ahead of their claim: which nodes may, and the context their task carries to do it."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from core.durations import DurationError, parse_duration
from flows.dsl.spec import NodeSpec
from flows.nodes.registry import get_kind

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


def context_bytes(node: NodeSpec) -> int:
    """How big a document `node`'s task may carry to run ahead of its claim (0: it is claimed first).

    Only pure kinds, whose run changes nothing but its own result, may run before their claim: a task that
    turns out not to own the run (a duplicate message, a canceled execution) has then done no harm. And only
    when their scripts' time limit is well under STALE_AFTER: a run ahead of its claim is still `queued` in
    PostgreSQL, without a heartbeat, so the reaper must never wait on one for long.
    """
    if not settings.FLOWRUNNER_TASK_CONTEXT_BYTES or not get_kind(node.type).pure:
        return 0
    bound = settings.FLOWRUNNER_SCRIPT_TIMEOUT
    own = node_timeout(node)
    if own:
        bound = min(bound, own)
    if bound >= settings.FLOWRUNNER_STALE_AFTER / 2:
        return 0
    return int(settings.FLOWRUNNER_TASK_CONTEXT_BYTES)


def task_context(execution: dict[str, Any], node_id: str, next_context: dict[str, Any] | None) -> Any:
    """What the next node's task carries: the execution as a claim would return it (its document as the finish
    that created the run left it), or None when the finish sent no document (too big, or not asked for)."""
    if not next_context:
        return None
    return {
        "node_id": node_id,
        "execution": {
            "id": execution["id"],
            "account_id": execution["account_id"],
            "flow_id": execution["flow_id"],
            "flow_version_id": execution["flow_version_id"],
            **next_context,
        },
    }


def claim_parts(
    node_run_id: int, context: dict[str, Any], *, task_id: str, worker: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The run and execution a claim would have returned, from a task's context, and what its finish must claim
    (`claim` in the finish's decision: this task's queued run, at the document version it ran on)."""
    execution = context["execution"]
    run = {
        "id": node_run_id,
        "node_id": context["node_id"],
        "batch_index": None,
        "attempt": 1,
        "step": execution["steps"],
        "input": None,
        "task_id": task_id,
        "parent_id": None,
    }
    return run, execution, {"task_id": task_id, "worker": worker, "steps": execution["steps"]}
