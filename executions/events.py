"""ExecutionEvent rows (gapless per-execution seq) and their broadcast to Channels groups after commit."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from executions.broadcast import (  # noqa: F401  (re-exported: consumers and tests use these names here)
    EVENT_MESSAGE_TYPE,
    EVENTS_MESSAGE_TYPE,
    account_group,
    broadcast_frames,
    execution_group,
)
from executions.models import Execution, ExecutionEvent

logger = logging.getLogger(__name__)


def _next_seq(execution_id: object, count: int = 1) -> int:
    # One UPDATE ... RETURNING both allocates the seq and row-locks the execution until commit, so events of
    # one execution commit in seq order and the sequence has no gaps.
    table = Execution._meta.db_table
    key = uuid.UUID(str(execution_id))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_event_seq = last_event_seq + %s WHERE id = %s RETURNING last_event_seq",
            [count, key],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"execution {execution_id} does not exist")
    return int(row[0])


def _frame(
    execution_id: Any, seq: int, type: str, node_id: str, body: dict[str, Any] | None, now: Any
) -> dict:
    frame: dict[str, Any] = {
        "type": type,
        "execution_id": str(execution_id),
        "seq": seq,
        "timestamp": now.isoformat(),
    }
    if node_id:
        frame["node_id"] = node_id
    frame.update(body or {})
    return frame


@dataclass
class ExecutionWork:
    """The writes to one execution row that a transaction holding its lock makes: field changes and events
    are collected, then written by `flush` with one UPDATE of the execution and one multi-row INSERT of the
    events (instead of a statement per change and two per event)."""

    execution: Any
    events: list[tuple[str, str, dict[str, Any] | None, Any]] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)

    def set(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.execution, name, value)
            self.dirty.add(name)

    def flush(self) -> None:
        execution = self.execution
        base = execution.last_event_seq
        rows, frames = [], []
        for offset, (type, node_id, body, now) in enumerate(self.events, start=1):
            frame = _frame(execution.id, base + offset, type, node_id, body, now)
            frames.append(frame)
            rows.append(
                ExecutionEvent(
                    execution_id=execution.id,
                    seq=base + offset,
                    type=type,
                    node_id=node_id,
                    payload=frame,
                    created_at=now,
                )
            )
        updates = {name: getattr(execution, name) for name in self.dirty}
        if rows:
            execution.last_event_seq = updates["last_event_seq"] = base + len(rows)
        if updates:
            Execution.objects.filter(id=execution.id).update(**updates)
        if rows:
            ExecutionEvent.objects.bulk_create(rows)
            account_id = execution.account_id
            transaction.on_commit(lambda: broadcast_frames(frames, account_id=account_id))
        self.events.clear()
        self.dirty.clear()


_local = threading.local()


def current_work(execution_id: Any) -> ExecutionWork | None:
    works = getattr(_local, "works", None)
    return works.get(str(execution_id)) if works else None


@contextmanager
def locked_execution_work(execution: Any) -> Iterator[ExecutionWork]:
    """Collect this transaction's writes to `execution` — whose row the caller has locked (SELECT ... FOR
    UPDATE), so the in-memory row is the truth — and write them at the end of the block."""
    works = getattr(_local, "works", None)
    if works is None:
        works = _local.works = {}
    key = str(execution.id)
    if key in works:  # nested: the outer block flushes
        yield works[key]
        return
    work = works[key] = ExecutionWork(execution)
    try:
        yield work
        work.flush()
    finally:
        works.pop(key, None)


def record_event(
    *, execution_id: Any, account_id: Any, type: str, node_id: str = "", body: dict[str, Any] | None = None
) -> None:
    """Store one event (inside the caller's transaction) and broadcast its frame once that commits.

    `body` holds the frame's type-specific keys (`status`, `node`, `log`, `message`). Inside
    `locked_execution_work` the event is collected and written with the others at the end of the block.
    """
    now = timezone.now()
    work = current_work(execution_id)
    if work is not None:
        work.events.append((type, node_id, body, now))
        return
    seq = _next_seq(execution_id)
    frame = _frame(execution_id, seq, type, node_id, body, now)
    ExecutionEvent.objects.create(
        execution_id=execution_id, seq=seq, type=type, node_id=node_id, payload=frame, created_at=now
    )
    transaction.on_commit(lambda: broadcast_frames([frame], account_id=account_id))
