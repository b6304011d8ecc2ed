"""Celery tasks: thin adapters that take ids and call the engine; safe to run twice (claims are CAS)."""

from __future__ import annotations

import functools
import logging

from celery import shared_task
from celery.signals import worker_process_init
from django.db import InterfaceError, OperationalError, connections

from core import metrics
from executions import dispatch
from executions.node_tasks import CONTEXT
from workers import batches, engine, reaper
from workers.sandbox import get_sandbox

logger = logging.getLogger(__name__)

DATABASE_RETRY_COUNTDOWN = 1.0


def _retry_or_done(task, directive) -> None:  # noqa: ANN001
    if directive is not None:
        # Another run (a retry's next attempt) or a later turn: the document a first attempt carried is stale.
        labels = {key: value for key, value in (task.request.kwargs or {}).items() if key != CONTEXT}
        raise task.retry(
            args=[directive.node_run_id], kwargs=labels, countdown=directive.countdown, max_retries=None
        )


def _redelivered(task) -> bool:  # noqa: ANN001
    # A message that comes back after its worker process died: no running ahead of the claim this time, so a
    # node that kills its worker is claimed, and its lost attempts are counted (and bounded) as usual.
    info = task.request.delivery_info or {}
    return bool(info.get("redelivered") or (task.request.headers or {}).get("redelivered"))


def reconnecting(func):  # noqa: ANN001, ANN201
    """A task that lost its database connection (server restart, terminated backend) drops the broken
    connection and runs again shortly; the claims make the second run safe."""

    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        try:
            return func(self, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("database error in %s%s: %s; retrying", self.name, args, exc)
            for conn in connections.all(initialized_only=True):
                conn.close()
            raise self.retry(countdown=DATABASE_RETRY_COUNTDOWN, max_retries=None) from exc

    return wrapper


@shared_task(bind=True, name=dispatch.RUN_NODE, ignore_result=True)
@reconnecting
def run_node(self, node_run_id: int, context: dict | None = None, **labels: str) -> None:
    # labels (execution_id, node_id) are for monitoring; `context` lets a pure node run ahead of its claim
    directive = engine.run_node(
        node_run_id,
        task_id=self.request.id or "",
        hostname=self.request.hostname or "",
        context=None if _redelivered(self) else context,
    )
    _retry_or_done(self, directive)


# Batch tasks keep their results: the chord counts them to know when to call the join.
@shared_task(bind=True, name=dispatch.RUN_BATCH)
@reconnecting
def run_batch(self, node_run_id: int, context: dict | None = None) -> None:
    # `context` lets a part run ahead of its claim (as for run_node, never on a redelivered message)
    directive = batches.run_part(
        node_run_id,
        task_id=self.request.id or "",
        hostname=self.request.hostname or "",
        context=None if _redelivered(self) else context,
    )
    _retry_or_done(self, directive)


@shared_task(bind=True, name=dispatch.JOIN_BATCHES, ignore_result=True)
@reconnecting
def join_batches(self, node_run_id: int) -> None:
    directive = batches.join(node_run_id)
    if directive is not None:
        run_node.apply_async(args=[directive.node_run_id], countdown=directive.countdown)


@shared_task(bind=True, name=dispatch.BATCH_DEADLINE, ignore_result=True)
@reconnecting
def batch_deadline(self, node_run_id: int) -> None:
    directive = batches.join(node_run_id, deadline=True)
    if directive is not None:
        run_node.apply_async(args=[directive.node_run_id], countdown=directive.countdown)


@shared_task(bind=True, name=dispatch.RESUME_NODE, ignore_result=True)
@reconnecting
def resume_node(self, node_run_id: int) -> None:
    engine.resume_node(node_run_id)


@shared_task(name=dispatch.REAP, ignore_result=True)
def reap() -> dict[str, int]:
    result = reaper.reap()
    metrics.reaper_pass(result)
    return result


@worker_process_init.connect
def _warm_sandbox(**_: object) -> None:
    # Pay V8's start-up in the worker's boot, not in the first node's latency.
    get_sandbox().warm_up()
