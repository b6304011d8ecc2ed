"""Celery tasks: thin adapters that take ids and call the engine; safe to run twice (claims are CAS)."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init

from workers import batches, engine, reaper


def _retry_or_done(task, directive) -> None:  # noqa: ANN001
    if directive is not None:
        raise task.retry(args=[directive.node_run_id], countdown=directive.countdown, max_retries=None)


@shared_task(bind=True, name="flowrunner.run_node")
def run_node(self, node_run_id: int) -> None:
    directive = engine.run_node(node_run_id, task_id=self.request.id or "", hostname=self.request.hostname or "")
    _retry_or_done(self, directive)


@shared_task(bind=True, name="flowrunner.run_batch")
def run_batch(self, node_run_id: int) -> None:
    directive = batches.run_batch(node_run_id, task_id=self.request.id or "", hostname=self.request.hostname or "")
    _retry_or_done(self, directive)


@shared_task(bind=True, name="flowrunner.join_batches")
def join_batches(self, node_run_id: int) -> None:
    directive = batches.join(node_run_id)
    if directive is not None:
        run_node.apply_async(args=[directive.node_run_id], countdown=directive.countdown)


@shared_task(bind=True, name="flowrunner.batch_deadline")
def batch_deadline(self, node_run_id: int) -> None:
    directive = batches.join(node_run_id, deadline=True)
    if directive is not None:
        run_node.apply_async(args=[directive.node_run_id], countdown=directive.countdown)


@shared_task(name="flowrunner.resume_node")
def resume_node(node_run_id: int) -> None:
    engine.resume_node(node_run_id)


@shared_task(name="flowrunner.reap")
def reap() -> dict[str, int]:
    return reaper.reap()


@worker_process_init.connect
def _warm_sandbox(**_: object) -> None:
    # Pay V8's start-up in the worker's boot, not in the first node's latency.
    from workers.sandbox import get_sandbox

    get_sandbox().warm_up()
