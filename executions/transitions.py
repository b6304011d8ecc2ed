"""The only writer of Execution.status and NodeRun.status: compare-and-swap updates, each recording an event.

The hot path (claim, finish, batch start) is one call each to a PL/pgSQL function that swaps, writes and
records events in one statement; the rarer changes (start, cancel, lost workers) are ORM updates that must run
inside the caller's transaction. Either way a broadcast is registered with `on_commit`, so nothing is
announced that did not happen.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from executions.broadcast import broadcast_frames
from executions.engine_reads import jsonb_value
from executions.events import current_work, record_event
from executions.models import TERMINAL_EXECUTION_STATUSES, Execution, NodeRun, NodeRunStatus
from executions.status import execution_status


class TransitionError(Exception):
    """A transition was asked outside a transaction."""


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise TransitionError("status transitions must run inside transaction.atomic()")


def record_status(execution: Execution, *, redact: Any = None) -> None:
    """Store a `status` event holding the ExecutionStatus as it is now (a replay shows the history)."""
    status = execution_status(execution, with_input=False)
    if redact is not None:
        status = redact(status)
    record_event(
        execution_id=execution.id,
        account_id=execution.account_id,
        type="status",
        node_id=execution.current_node,
        body={"status": status},
    )


def execution_transition(
    execution: Execution, *, to: str, expected: Iterable[str], redact: Any = None, **fields: Any
) -> bool:
    """CAS the execution's status from one of `expected` to `to`; update `fields`; record a status event."""
    _require_transaction()
    if to in TERMINAL_EXECUTION_STATUSES:
        fields.setdefault("finished_at", timezone.now())
        fields["progress"] = 100.0
    work = current_work(execution.id)
    if work is not None:
        # The row is locked by this transaction: the in-memory status is the truth, the swap is in memory.
        if execution.status not in set(expected):
            return False
        work.set(status=to, **fields)
    else:
        updated = Execution.objects.filter(id=execution.id, status__in=list(expected)).update(
            status=to, **fields
        )
        if not updated:
            return False
        execution.status = to
        for name, value in fields.items():
            setattr(execution, name, value)
    record_status(execution, redact=redact)
    return True


def node_run_frame(node_run: NodeRun) -> dict[str, Any]:
    return {
        "node_id": node_run.node_id,
        "batch_index": node_run.batch_index,
        "attempt": node_run.attempt,
        "status": node_run.status,
        "action": node_run.action or None,
        "error": node_run.error or None,
    }


def record_node(node_run: NodeRun, *, account_id: Any) -> None:
    record_event(
        execution_id=node_run.execution_id,
        account_id=account_id,
        type="node",
        node_id=node_run.node_id,
        body={"node": node_run_frame(node_run)},
    )


def node_run_create(*, execution: Execution, status: str = NodeRunStatus.QUEUED, **fields: Any) -> NodeRun:
    """Create a node run (queued, or retrying for a scheduled retry) and record its `node` event."""
    _require_transaction()
    node_run = NodeRun.objects.create(execution=execution, status=status, **fields)
    record_node(node_run, account_id=execution.account_id)
    return node_run


def node_run_transition(
    node_run: NodeRun, *, to: str, expected: Iterable[str], account_id: Any, **fields: Any
) -> bool:
    """CAS a node run's status; on success update `fields` on the instance and record a `node` event."""
    _require_transaction()
    updated = NodeRun.objects.filter(id=node_run.id, status__in=list(expected)).update(status=to, **fields)
    if not updated:
        return False
    node_run.status = to
    for name, value in fields.items():
        setattr(node_run, name, value)
    record_node(node_run, account_id=account_id)
    return True


def node_runs_cancel(
    node_runs: Iterable[NodeRun], *, account_id: Any, status: str = NodeRunStatus.CANCELED, error: str = ""
) -> list[NodeRun]:
    """Move every non-terminal run given to `status` (canceled or timed_out); returns the ones moved."""
    moved = []
    now = timezone.now()
    for node_run in node_runs:
        if node_run_transition(
            node_run,
            to=status,
            expected=(NodeRunStatus.QUEUED, NodeRunStatus.RUNNING, NodeRunStatus.RETRYING),
            account_id=account_id,
            finished_at=now,
            error=error or node_run.error,
        ):
            moved.append(node_run)
    return moved


def record_log(
    *, execution_id: Any, account_id: Any, node_id: str, level: str, message: str, data: Any = None
) -> None:
    """A `log` event (console.log, the log node, engine notices); the caller has redacted secrets."""
    _require_transaction()
    record_event(
        execution_id=execution_id,
        account_id=account_id,
        type="log",
        node_id=node_id,
        body={
            "log": {
                "timestamp": timezone.now().isoformat(),
                "node_id": node_id or None,
                "level": level,
                "message": message,
                "data": data,
            }
        },
    )


# --- the node-run state machine: one statement each (PL/pgSQL functions installed by the migrations) --------


def _call(sql: str, args: list[Any], *, then: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """One round trip; in autocommit it is its own transaction. Once it has committed its frames are broadcast
    and then `then` runs (publishing the next task), so no subscriber sees the next node before this one."""
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        raw = cursor.fetchone()[0]
    result = jsonb_value(raw)
    frames = result.get("frames") or []
    # A claim names its account inside the execution it returns.
    account_id = result.get("account_id") or (result.get("execution") or {}).get("account_id")
    after = (lambda: then(result)) if then is not None else None
    if frames or after is not None:
        transaction.on_commit(lambda: broadcast_frames(frames, account_id=account_id, then=after))
    return result


def _row(instance: models.Model, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every column of an unsaved instance as JSON, defaults and `auto_now_add` applied as a save would (plain
    values only: a field the database computes, by `db_default` or as a generated column, is refused)."""
    row: dict[str, Any] = {}
    for field in type(instance)._meta.concrete_fields:
        if field.attname in skip:
            continue
        if getattr(field, "generated", False) or field.has_db_default():
            raise TypeError(f"{field.name}: a value the database computes cannot be sent in a row")
        value = field.pre_save(instance, add=True)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        row[field.column] = value
    return row


def execution_insert(*, execution: Execution, node_run: NodeRun | None) -> dict[str, Any]:
    """Insert a new execution (queued) and, unless it waits for admission, its first node run (queued), with
    their `status` and `node` events: one statement. Marks both instances saved (the run gets its id) and
    returns what the start answered, with `has_secrets` (whether the account has secrets)."""
    document = {
        "execution": _row(execution),
        "run": _row(node_run, skip=("id", "execution_id")) if node_run is not None else None,
    }
    result = _call("SELECT flowrunner_start(%s::jsonb)", [json.dumps(document)])
    execution.last_event_seq = len(result["frames"])
    execution._state.adding, execution._state.db = False, connection.alias
    if node_run is not None:
        node_run.id = int(result["run"])
        node_run._state.adding, node_run._state.db = False, connection.alias
    return result


def node_run_claim(node_run_id: int, *, task_id: str, worker: str) -> dict[str, Any]:
    """queued|retrying → running (and the execution to running, its current node set), with its events.

    `outcome` is `claimed` (with `run`, `execution` and, for a batch part, `parent_input`), `busy` (its batch
    node already runs max_parallel parts), `interrupted` (this task claimed it before and never finished),
    `ended` (its execution or batch node is over: the run was canceled) or `taken`.
    """
    sql = "SELECT flowrunner_claim(%s, %s, %s)"
    if not connection.in_atomic_block:
        # The claim's commit does not wait for its WAL flush (the finish's, which follows, flushes both): one
        # durable commit per node run. A database crash can forget a claim of its last moments; the run is then
        # queued again, and its task, which retries when the database is back, claims and runs it again, as
        # after any worker crash.
        sql += ", set_config('synchronous_commit', 'off', true)"
    return _call(sql, [node_run_id, task_id or "", worker or ""])


def node_run_finish(decision_json: str, *, then: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Record a running run's outcome and move its execution on as the decision (JSON text, already made
    storable) says; `then(result)` runs once the frames are broadcast."""
    return _call("SELECT flowrunner_finish(%s::jsonb)", [decision_json], then=then)


def batch_parts_create(*, node_run_id: int, parts_json: str, lanes: int, item_count: int) -> dict[str, Any]:
    """Create the parts (`parts_json`: their inputs, a JSON array) of a running batch node, once; returns
    `parts` = [[id, task_id]] in batch order, or outcome `stale` when they exist or the node ended."""
    return _call(
        "SELECT flowrunner_start_batch(jsonb_build_object('run', %s::bigint, 'parts', %s::jsonb, "
        "'lanes', %s::integer, 'item_count', %s::integer))",
        [node_run_id, parts_json, lanes, item_count],
    )
