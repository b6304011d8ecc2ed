"""The Celery app: JSON only, late acks, one task at a time per process; tasks are found in `workers.tasks`,
`executions.tasks` and `triggers.tasks`."""

import os

from celery import Celery
from celery.signals import worker_init
from django.conf import settings

from flowrunner import brokerguard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowrunner.settings")
# Before any connection exists: a worker must outlive its broker going away (see the module).
brokerguard.install()

from executions import dispatch  # noqa: E402
from flowrunner import worker_metrics  # noqa: E402

app = Celery("flowrunner")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="celery",
    task_track_started=False,
    result_expires=3600,
    result_chord_retry_interval=0.05,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # The reaper, not the broker, recovers lost work (PostgreSQL is the truth): a long visibility timeout
    # keeps countdown tasks from being redelivered over and over while they wait.
    broker_transport_options={"visibility_timeout": 3600, "polling_interval": 0.01},
    result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
    imports=("workers.tasks", "executions.tasks", "triggers.tasks"),
)
worker_metrics.install(app)
# Celery's Django fixup would otherwise close (in prefork: destroy) the connection pool around every task,
# costing a new PostgreSQL connection per node run. A dead connection is handled by the tasks themselves.
app.conf.CELERY_DB_REUSE_MAX = 1000


@app.on_after_finalize.connect
def _schedule_periodic_tasks(sender: Celery, **_: object) -> None:
    sender.add_periodic_task(
        settings.FLOWRUNNER_REAPER_INTERVAL, sender.signature(dispatch.REAP), name="reaper"
    )
    # Starts executions still waiting for a slot that freed when no admission followed (a process died).
    sender.add_periodic_task(
        settings.FLOWRUNNER_REAPER_INTERVAL, sender.signature(dispatch.ADMIT), name="admission"
    )


@worker_init.connect
def _check_encryption_key(sender: object = None, **_: object) -> None:
    # Before the worker consumes anything: a key that cannot decrypt the stored secrets stops it here, with
    # the reason, instead of failing every node that needs a secret. Imported here: this module loads with the
    # flowrunner package, before Django's apps are ready, and keycheck imports models.
    from accounts.keycheck import on_worker_init

    on_worker_init(sender)
