"""Celery entry point of the bench workers: FlowRunner's app plus the raw baseline tasks (and counters)."""

from __future__ import annotations

import os

from celery.signals import task_postrun, task_prerun, worker_process_init

from flowrunner.celery import app

COUNTING = os.environ.get("FLOWRUNNER_BENCH_COUNT_QUERIES", "").lower() in {"1", "true", "yes"}

app.conf.imports = (*app.conf.imports, "bench.baseline_tasks")
_redis = None


def _stats_client():  # noqa: ANN202
    global _redis
    if _redis is None:
        import redis
        from django.conf import settings

        _redis = redis.Redis.from_url(settings.REDIS_URL)
    return _redis


if COUNTING:
    from bench import querycount

    @worker_process_init.connect
    def _install_counters(**_: object) -> None:
        querycount.install_database_counting()
        querycount.install_redis_counting()

    @task_prerun.connect
    def _task_started(task=None, **_: object) -> None:  # noqa: ANN001
        querycount.set_task(getattr(task, "name", "?"))
        querycount.TALLY.add(f"m|{querycount.current_task()}|tasks")

    @task_postrun.connect
    def _task_ended(**_: object) -> None:
        # The Django fixup closes (returns to the pool) the connection after this handler; flushing here
        # still counts everything the task itself did.
        querycount.set_task(None)
        querycount.flush_to_redis(_stats_client())


__all__ = ["app"]
