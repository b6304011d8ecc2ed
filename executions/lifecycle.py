"""What follows an execution's end, once it has committed: its completion callback is enqueued and the
executions waiting for the slot it held are admitted."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from celery import current_app
from django.db import connection, transaction
from django.utils import timezone

from executions import admission, dispatch
from executions.models import TERMINAL_EXECUTION_STATUSES, Execution

logger = logging.getLogger(__name__)


# One round trip per end, whatever the flow: the callback URL, and whether anyone of the account waits.
_AFTER_END_SQL = f"""
SELECT e.callback_url, EXISTS (
    SELECT 1 FROM {Execution._meta.db_table} w
     WHERE w.account_id = e.account_id AND w.status = 'queued' AND w.waiting_reason <> '')
  FROM {Execution._meta.db_table} e WHERE e.id = %s
"""


def execution_ended(
    *, execution_id: Any, account_id: Any, flow_id: str, known: dict[str, Any] | None = None
) -> None:
    """Called once by the path that made the execution terminal (a node's finish, a cancel); the work runs
    after that transaction commits (at once in autocommit). `known` ({"callback": bool, "waiting": bool}, what
    a node's finish read in its own statement) spares the query that would read them."""
    transaction.on_commit(lambda: _after_end(execution_id, account_id, flow_id, known))


def _after_end(execution_id: Any, account_id: Any, flow_id: str, known: dict[str, Any] | None) -> None:
    # Never raises into the engine: a lost admission is redone by the sweep.
    try:
        if known is not None:
            has_callback, someone_waits = bool(known.get("callback")), bool(known.get("waiting"))
        else:
            with connection.cursor() as cursor:
                cursor.execute(_AFTER_END_SQL, [uuid.UUID(str(execution_id))])
                row = cursor.fetchone()
            if row is None:
                return
            has_callback, someone_waits = bool(row[0]), bool(row[1])
        if has_callback:
            send_callback(execution_id)
        if someone_waits:
            admission.admit(account_id=account_id, flow_id=flow_id)
    except Exception:
        logger.exception("after the end of execution %s", execution_id)


def send_callback(execution_id: Any) -> None:
    """Publish the first delivery attempt (the task retries itself); a broker failure is logged."""
    try:
        current_app.send_task(dispatch.DELIVER_CALLBACK, args=[str(execution_id), 1], ignore_result=True)
    except Exception:
        logger.warning("could not enqueue the callback of execution %s", execution_id, exc_info=True)


# An end whose first callback attempt was never published (its process died between the commit and the send, or
# the broker was down) is sent by the periodic sweep once it is this old; the attempt's claim on
# callback_attempts makes a message sent twice deliver once.
CALLBACK_LOST_AFTER = timedelta(seconds=30)
CALLBACKS_PER_SWEEP = 500


def callbacks_resend_lost() -> int:
    """The sweep: publish the first attempt of every ended execution's callback that never had one."""
    cutoff = timezone.now() - CALLBACK_LOST_AFTER
    ids = list(
        Execution.objects.filter(
            status__in=TERMINAL_EXECUTION_STATUSES,
            callback_attempts=0,
            callback_delivered_at__isnull=True,
            finished_at__lt=cutoff,
        )
        .exclude(callback_url="")
        .order_by("finished_at")
        .values_list("id", flat=True)[:CALLBACKS_PER_SWEEP]
    )
    for execution_id in ids:
        send_callback(execution_id)
    return len(ids)
