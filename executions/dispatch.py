"""Enqueue node tasks by name after commit: the executions app never imports the workers app."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)

RUN_NODE = "flowrunner.run_node"
RUN_BATCH = "flowrunner.run_batch"
RESUME_NODE = "flowrunner.resume_node"
JOIN_BATCHES = "flowrunner.join_batches"
BATCH_DEADLINE = "flowrunner.batch_deadline"
REAP = "flowrunner.reap"
ADMIT = "flowrunner.admit"
DELIVER_CALLBACK = "flowrunner.deliver_callback"
# Tasks whose results nobody reads. Sent by name, Celery cannot know that, so it would subscribe to each one's
# result channel (a SUBSCRIBE and later an UNSUBSCRIBE on Redis for every node run) unless it is told.
_NO_RESULT = frozenset({RUN_NODE, RESUME_NODE, JOIN_BATCHES, BATCH_DEADLINE})


def task_labels(execution_id: Any, node_id: str | None) -> dict[str, str]:
    """The labels monitors (Flower, `celery events`) show as a node or batch part task's kwargs."""
    return {"execution_id": str(execution_id or ""), "node_id": node_id or ""}


def send_now(
    task: str,
    node_run_id: int,
    *,
    queue: str | None = None,
    countdown: float | None = None,
    time_limit: float | None = None,
    task_id: str | None = None,
    execution_id: Any = None,
    node_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Publish one task; a broker failure is logged, not raised: the reaper re-drives from PostgreSQL.

    `execution_id` and `node_id`, when given, travel as keyword arguments the task ignores (the run's id says
    it all), so that Flower, `celery events` and `celery inspect` show which execution and node a task is.
    `extra` holds more keyword arguments (those set to None are left out); they are not shown there.
    """
    options: dict[str, Any] = {}
    if execution_id is not None or node_id is not None:
        options["kwargs"] = task_labels(execution_id, node_id)
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    if time_limit:
        options["time_limit"] = time_limit
    if task_id:
        options["task_id"] = task_id
    if task in _NO_RESULT:
        options["ignore_result"] = True
    # What Celery would otherwise build with its saferepr (a third of a publish's CPU); the reaper reads it.
    # (plain repr of two strings for the labels: what task events, and so Flower, show as the kwargs)
    options.update(
        argsrepr=f"[{int(node_run_id)}]", kwargsrepr=repr(options["kwargs"]) if "kwargs" in options else "{}"
    )
    hidden = {key: value for key, value in (extra or {}).items() if value is not None}
    if hidden:
        # A copy: the shown kwargs above stay the labels only (the document never reaches task events or logs).
        options["kwargs"] = {**options.get("kwargs", {}), **hidden}
    try:
        current_app.send_task(task, args=[node_run_id], **options)
    except Exception:
        logger.warning(
            "could not enqueue %s(%s); the reaper will re-drive it", task, node_run_id, exc_info=True
        )


def send_on_commit(task: str, node_run_id: int, **options: Any) -> None:
    transaction.on_commit(lambda: send_now(task, node_run_id, **options))


def revoke_on_commit(task_ids: list[str]) -> None:
    ids = [task_id for task_id in task_ids if task_id]
    if not ids:
        return

    def _revoke() -> None:
        try:
            current_app.control.revoke(ids)
        except Exception:  # revocation is an optimisation: claims already refuse canceled runs
            logger.warning("could not revoke %d task(s)", len(ids), exc_info=True)

    transaction.on_commit(_revoke)
