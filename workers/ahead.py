"""Pure nodes run ahead of their claim: the context the next node's task carries, and what its finish claims."""

from __future__ import annotations

from typing import Any


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
