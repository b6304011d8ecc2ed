"""Reads the WebSocket consumer needs, each one thread hop (database_sync_to_async), always account-scoped."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from executions.models import TERMINAL_EXECUTION_STATUSES, Execution, ExecutionEvent
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
    *, account_id: Any, execution_id: Any, after: int, before: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """Stored frames with after < seq < before of one of the account's executions (a gap in live delivery),
    the first `limit` of them when given."""
    events = ExecutionEvent.objects.filter(
        execution_id=execution_id, execution__account_id=account_id, seq__gt=after, seq__lt=before
    )
    return list(events.order_by("seq").values_list("payload", flat=True)[:limit])


# The WebSocket's reads run on threads of their own, not on Channels' one thread-sensitive thread: thousands of
# sockets connecting (auth, snapshot) or catching up would otherwise queue behind each other there, past
# daphne's handshake and shutdown timeouts. Each call borrows a pooled connection for its duration only.
WS_DB_THREADS = 4
ws_db_executor = ThreadPoolExecutor(max_workers=WS_DB_THREADS, thread_name_prefix="flowrunner-ws-db")


def ws_database_sync_to_async(function: Any) -> Any:
    return database_sync_to_async(function, thread_sensitive=False, executor=ws_db_executor)


def last_seqs_sync(*, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The last event seq of each (account id, execution id) asked for; none for another account's."""
    rows = Execution.objects.filter(id__in={execution_id for _, execution_id in keys}).values_list(
        "account_id", "id", "last_event_seq"
    )
    found = {(str(account_id), str(execution_id)): seq for account_id, execution_id, seq in rows}
    return {key: found[key] for key in keys if key in found}


subscription_open = ws_database_sync_to_async(subscription_open_sync)
events_between = ws_database_sync_to_async(events_between_sync)
last_seqs = ws_database_sync_to_async(last_seqs_sync)

# Reads of stored events shared by the sockets of one process: many sockets watching one execution fill the
# same gap or catch up from the same seq at about the same time, and one query serves them all. A result is
# reused for SHARED_FOR seconds: events below a broadcast seq never change, and a catch-up that misses an
# event committed meanwhile gets it on its next round.
SHARED_FOR = 1.0
SHARED_MAX = 4096
_shared: dict[tuple[Any, ...], tuple[float, asyncio.Future]] = {}


async def events_between_shared(
    *, account_id: Any, execution_id: Any, after: int, before: int, limit: int | None = None
) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    key = (id(loop), str(account_id), str(execution_id), after, before, limit)
    now = time.monotonic()
    hit = _shared.get(key)
    if hit is None or (hit[1].done() and now - hit[0] >= SHARED_FOR):
        if len(_shared) >= SHARED_MAX:
            for old, (at, future) in list(_shared.items()):
                if future.done() and now - at >= SHARED_FOR:
                    del _shared[old]
            if len(_shared) >= SHARED_MAX:
                _shared.clear()
        future = asyncio.ensure_future(
            events_between(
                account_id=account_id, execution_id=execution_id, after=after, before=before, limit=limit
            )
        )
        future.add_done_callback(lambda done: _forget_failed(key, done))
        hit = _shared[key] = (now, future)
    return list(await asyncio.shield(hit[1]))


def _forget_failed(key: tuple[Any, ...], future: asyncio.Future) -> None:
    if future.cancelled() or future.exception() is not None:
        entry = _shared.get(key)
        if entry is not None and entry[1] is future:
            del _shared[key]
