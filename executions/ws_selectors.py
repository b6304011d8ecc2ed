"""Reads the WebSocket consumer needs, each one thread hop (database_sync_to_async), always account-scoped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from executions.models import TERMINAL_EXECUTION_STATUSES, ExecutionEvent
from executions.selectors import execution_get, redacted_status


@dataclass(frozen=True)
class Subscription:
    """What a new subscriber is sent, in order: `replay`, then `snapshot` (then `complete` if `terminal`)."""

    execution_id: str
    replay: list[dict[str, Any]]
    snapshot: dict[str, Any]
    terminal: bool


def _payloads(execution_id: Any, *, after: int, upto: int) -> list[dict[str, Any]]:
    events = ExecutionEvent.objects.filter(execution_id=execution_id, seq__gt=after, seq__lte=upto)
    return list(events.order_by("seq").values_list("payload", flat=True))


def subscription_open_sync(*, account_id: Any, execution_id: Any, since: int | None) -> Subscription:
    """The replay and the snapshot of one of the account's executions; NotFound for anything else."""
    execution = execution_get(account=account_id, execution_id=execution_id)
    last_seq = execution.last_event_seq
    # Replay stops at the snapshot's seq: an event committed after the row was read arrives live instead, and
    # would otherwise come before a snapshot that then looks like a step backwards.
    replay = [] if since is None else _payloads(execution.id, after=since, upto=last_seq)
    snapshot: dict[str, Any] = {
        "type": "status",
        "execution_id": str(execution.id),
        "seq": last_seq,
        "timestamp": timezone.now().isoformat(),
    }
    if execution.current_node:
        snapshot["node_id"] = execution.current_node
    snapshot["status"] = redacted_status(execution)
    return Subscription(
        execution_id=str(execution.id),
        replay=replay,
        snapshot=snapshot,
        terminal=execution.status in TERMINAL_EXECUTION_STATUSES,
    )


def events_between_sync(
    *, account_id: Any, execution_id: Any, after: int, before: int
) -> list[dict[str, Any]]:
    """Stored frames with after < seq < before of one of the account's executions (a gap in live delivery)."""
    events = ExecutionEvent.objects.filter(
        execution_id=execution_id, execution__account_id=account_id, seq__gt=after, seq__lt=before
    )
    return list(events.order_by("seq").values_list("payload", flat=True))


subscription_open = database_sync_to_async(subscription_open_sync)
events_between = database_sync_to_async(events_between_sync)
