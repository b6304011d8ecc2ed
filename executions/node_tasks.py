"""How a node run becomes a Celery task: its queue, its hard time limit, and its enqueue on commit."""

from __future__ import annotations

from typing import Any

from executions import dispatch
from executions.models import NodeRun
from flows.dsl.spec import NodeSpec
from flows.nodes.registry import get_kind

# The worker bounds a node's own work by its timeout; the task's hard limit, this much later, only stops a
# process that ignored it (the attempt is then lost and run again like any dead worker's).
HARD_LIMIT_GRACE = 30.0


def node_task_options(node: NodeSpec) -> dict[str, Any]:
    """Queue and hard time limit of a node's task (a batch node's timeout is a deadline, not a task limit)."""
    kind = get_kind(node.type)
    options: dict[str, Any] = {"queue": node.queue}
    if node.timeout and kind is not None and not kind.is_batch and node.type not in ("wait", "delay"):
        options["time_limit"] = node.timeout + HARD_LIMIT_GRACE
    return options


def enqueue_node_run(node_run: NodeRun, node: NodeSpec, *, countdown: float | None = None) -> None:
    dispatch.send_on_commit(
        dispatch.RUN_NODE, node_run.id, countdown=countdown, execution_id=node_run.execution_id,
        node_id=node_run.node_id, **node_task_options(node),
    )  # fmt: skip
