"""Batch lanes: a batch node's parts run as `max_parallel` Celery chains. Which part drives its lane, the latest
attempt of every part, and publishing a lane's queued rest as one chain (the reaper and lost attempts)."""

from __future__ import annotations

import logging
from typing import Any

from celery import chain, current_app

from executions import dispatch
from executions.models import TERMINAL_NODE_STATUSES, NodeRun, NodeRunStatus
from executions.node_tasks import node_task_options
from workers.specs import spec_for_version

logger = logging.getLogger(__name__)


def latest_parts(parent_id: int) -> dict[int, NodeRun]:
    """The latest attempt of every part of a batch node's run, by batch index (one query)."""
    rows = (
        NodeRun.objects.filter(parent_id=parent_id)
        .order_by("batch_index", "-attempt", "-id")
        .distinct("batch_index")
    )
    return {row.batch_index: row for row in rows}


def lane_width(parent: NodeRun) -> int:
    return max(1, int((parent.input or {}).get("lanes") or 1))


class Lanes:
    """Lane lookups for one pass: each batch node's parent and latest parts are read once.

    Only a lane's head message exists in the broker; the next is published when its predecessor finishes. So a
    queued part behind an open predecessor of its lane is not lost, only waiting its turn (however long the
    lane takes); and when a lane's head is re-driven the queued rest of the lane goes along as one chain, which
    keeps `max_parallel` and costs one STALE_AFTER per lane rather than per part.
    """

    def __init__(self) -> None:
        self._nodes: dict[int, tuple[NodeRun | None, dict[int, NodeRun]]] = {}

    def _node(self, part: NodeRun) -> tuple[NodeRun | None, dict[int, NodeRun]]:
        key = part.parent_id
        if key not in self._nodes:
            parent = NodeRun.objects.filter(id=key).first()
            self._nodes[key] = (parent, latest_parts(key) if parent is not None else {})
        return self._nodes[key]

    def lane(self, part: NodeRun) -> tuple[bool, list[NodeRun]] | None:
        """(head, successors) of `part`'s lane: `head` is False when an earlier member of the lane is still
        open (that one drives the lane; `part` waits its turn); `successors` are the later members still
        queued. None when the batch node is gone."""
        parent, latest = self._node(part)
        if parent is None:
            return None
        lanes = lane_width(parent)
        index = part.batch_index
        earlier = [latest[i] for i in range(index % lanes, index, lanes) if i in latest]
        head = all(run.status in TERMINAL_NODE_STATUSES for run in earlier)
        later = sorted(i for i in latest if i > index and (i - index) % lanes == 0)
        return head, [latest[i] for i in later if latest[i].status == NodeRunStatus.QUEUED]

    def decide(self, run: NodeRun) -> tuple[bool, list[NodeRun]]:
        """(re-drive it now?, queued successors to chain after it) for a run found stale."""
        if run.parent_id is None:
            return True, []
        return self.lane(run) or (False, [])


def task_for(node_run: NodeRun) -> str:
    return dispatch.RUN_BATCH if node_run.parent_id is not None else dispatch.RUN_NODE


def task_options(node_run: NodeRun) -> dict[str, Any]:
    node = spec_for_version(node_run.execution.flow_version_id).nodes.get(node_run.node_id)
    if node is None:
        return {}
    if node_run.parent_id is not None:
        return {"queue": node.queue}
    return node_task_options(node)


def send(run: NodeRun, successors: list[NodeRun] | None = None) -> None:
    """Publish `run`'s task; a batch part takes the queued rest of its lane along as one chain."""
    options = task_options(run)
    if not successors:
        dispatch.send_now(task_for(run), run.id, **options)
        return
    queue = options.get("queue")
    signatures = [
        current_app.signature(dispatch.RUN_BATCH, args=[member.id], immutable=True, queue=queue)
        for member in [run, *successors]
    ]
    try:
        chain(*signatures).apply_async()
    except Exception:  # the broker is down: the rows stay as they are and the next pass tries again
        logger.warning("could not re-send the lane of node run %s", run.id, exc_info=True)
