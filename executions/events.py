"""ExecutionEvent rows (gapless per-execution seq) and their broadcast to Channels groups after commit."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.utils import timezone

from executions.models import ExecutionEvent

logger = logging.getLogger(__name__)

EVENT_MESSAGE_TYPE = "execution.event"


def execution_group(execution_id: object) -> str:
    return f"execution.{execution_id}"


def account_group(account_id: object) -> str:
    return f"account.{account_id}"


def _next_seq(execution_id: object, count: int = 1) -> int:
    # One UPDATE ... RETURNING both allocates the seq and row-locks the execution until commit, so events of
    # one execution commit in seq order and the sequence has no gaps.
    from executions.models import Execution

    table = Execution._meta.db_table
    key = uuid.UUID(str(execution_id))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_event_seq = last_event_seq + %s WHERE id = %s RETURNING last_event_seq",
            [count, key.hex if connection.vendor == "sqlite" else key],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"execution {execution_id} does not exist")
    return int(row[0])


def record_event(
    *, execution_id: Any, account_id: Any, type: str, node_id: str = "", body: dict[str, Any] | None = None
) -> ExecutionEvent:
    """Store one event (inside the caller's transaction) and broadcast its frame once that commits.

    `body` holds the frame's type-specific keys (`status`, `node`, `log`, `message`).
    """
    seq = _next_seq(execution_id)
    now = timezone.now()
    frame: dict[str, Any] = {
        "type": type,
        "execution_id": str(execution_id),
        "seq": seq,
        "timestamp": now.isoformat(),
    }
    if node_id:
        frame["node_id"] = node_id
    frame.update(body or {})
    event = ExecutionEvent.objects.create(
        execution_id=execution_id, seq=seq, type=type, node_id=node_id, payload=frame, created_at=now
    )
    transaction.on_commit(lambda: broadcast_frame(frame, account_id=account_id))
    return event


def broadcast_frame(frame: dict[str, Any], *, account_id: Any) -> None:
    """Send a committed event's frame to its execution's and its account's groups; never raises."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": EVENT_MESSAGE_TYPE, "frame": frame, "account_id": str(account_id)}
    try:
        async_to_sync(_send_both)(layer, message, frame["execution_id"], account_id)
    except Exception:  # the event is durable in PostgreSQL; a subscriber catches up by seq
        logger.warning("broadcast of event %s#%s failed", frame["execution_id"], frame["seq"], exc_info=True)


async def _send_both(layer: Any, message: dict[str, Any], execution_id: str, account_id: Any) -> None:
    await layer.group_send(execution_group(execution_id), message)
    await layer.group_send(account_group(account_id), message)
