"""Admission: a flow's `metadata.concurrency` and FLOWRUNNER_ACCOUNT_MAX_RUNNING bound the executions that hold a
slot; one beyond a bound stays queued with a waiting reason (no node run yet) and starts, FIFO per flow, when
a slot frees.

Race-free across processes: every decision holds the account's advisory lock until its transaction ends, and
reads the slots only after taking it (in READ COMMITTED each statement sees what committed before it), so two
admissions of one account never both take the last slot. Ending an execution frees its slot without the lock;
the admission that follows the end (or the periodic sweep) takes the lock and starts whoever waits.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min

from executions import transitions
from executions.events import locked_execution_work
from executions.models import Execution, ExecutionStatus, WaitingReason
from executions.node_tasks import enqueue_node_run
from flows.selectors import flow_version_spec

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock(namespace, key): the namespace keeps these locks apart from any other advisory lock.
LOCK_NAMESPACE = 0x41444D54  # "ADMT"
# Waiting executions started by one admission of one flow, and flows visited by one account-wide pass; the
# rest start on the next end or sweep.
ADMIT_BATCH = 100
MAX_FLOWS_PER_PASS = 100


def account_limit() -> int | None:
    """FLOWRUNNER_ACCOUNT_MAX_RUNNING, or None when unbounded (0, the default)."""
    return settings.FLOWRUNNER_ACCOUNT_MAX_RUNNING or None


def _lock(account_id: Any) -> None:
    """The account's admission lock, held until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_NAMESPACE, str(account_id)])


def _holding(**conditions: Any) -> int:
    return Execution.objects.filter(
        status__in=ExecutionStatus.ACTIVE, waiting_reason="", **conditions
    ).count()


def _waiting(**conditions: Any) -> Any:
    return Execution.objects.filter(status=ExecutionStatus.QUEUED, **conditions).exclude(waiting_reason="")


_NEW_RUN_SQL = f"""
SELECT
  (SELECT count(*) FROM {Execution._meta.db_table}
    WHERE account_id = %(account)s AND flow_id = %(flow)s AND status IN ('queued', 'running')
      AND waiting_reason = ''),
  CASE WHEN %(count_account)s THEN
    (SELECT count(*) FROM {Execution._meta.db_table}
      WHERE account_id = %(account)s AND status IN ('queued', 'running') AND waiting_reason = '')
  END,
  EXISTS (SELECT 1 FROM {Execution._meta.db_table}
    WHERE account_id = %(account)s AND flow_id = %(flow)s AND status = 'queued' AND waiting_reason <> '')
"""


def is_bounded(*, concurrency: int | None) -> bool:
    """Whether a new execution of a flow with this `metadata.concurrency` must ask for admission."""
    return bool(concurrency) or account_limit() is not None


def reason_to_wait(*, account_id: Any, flow_id: str, concurrency: int | None) -> str:
    """Inside the transaction that creates a new execution of the flow, before creating it: '' when it may
    start now, else why it waits. Unbounded (no flow or account bound) costs nothing; bounded, it takes the
    account's lock for the rest of the transaction. A new execution also waits behind one of its flow already
    waiting, whatever the slots say (FIFO per flow: the admission after the end that freed a slot starts the
    older one first)."""
    if not is_bounded(concurrency=concurrency):
        return ""
    limit = account_limit()
    _lock(account_id)
    with connection.cursor() as cursor:
        cursor.execute(
            _NEW_RUN_SQL, {"account": account_id, "flow": flow_id, "count_account": limit is not None}
        )
        flow_held, account_held, flow_waiting = cursor.fetchone()
    if concurrency and flow_held >= concurrency:
        return WaitingReason.FLOW_CONCURRENCY
    if limit is not None and account_held >= limit:
        return WaitingReason.ACCOUNT_CONCURRENCY
    if flow_waiting:
        return WaitingReason.FLOW_CONCURRENCY if concurrency else WaitingReason.ACCOUNT_CONCURRENCY
    return ""


def admit(*, account_id: Any, flow_id: str | None = None) -> int:
    """Start waiting executions of the account while slots are free, in their own transaction: `flow_id`'s
    first, then (with an account bound, or with no flow given) the other flows, the longest waiting first.
    Returns how many started."""
    limit = account_limit()
    with transaction.atomic():
        _lock(account_id)
        free = None if limit is None else limit - _holding(account_id=account_id)
        flows = [flow_id] if flow_id else []
        if flow_id is None or limit is not None:
            others = (
                _waiting(account_id=account_id)
                .values("flow_id")
                .annotate(since=Min("created_at"))
                .order_by("since")
                .values_list("flow_id", flat=True)[:MAX_FLOWS_PER_PASS]
            )
            flows += [other for other in others if other != flow_id]
        started = 0
        for flow in flows:
            count = _admit_flow(account_id, flow, free)
            started += count
            if free is not None:
                free -= count
                if free <= 0:
                    break
    return started


def _admit_flow(account_id: Any, flow_id: str, free: int | None) -> int:
    """Start the flow's waiting executions in order while its bound and `free` account slots allow; the first
    one left waiting gets the reason it still waits."""
    held = _holding(account_id=account_id, flow_id=flow_id)
    size = ADMIT_BATCH if free is None else max(1, min(free, ADMIT_BATCH))
    line = list(
        _waiting(account_id=account_id, flow_id=flow_id)
        .select_for_update(of=("self",))
        .select_related("flow_version")
        .order_by("created_at", "id")[:size]
    )
    started = 0
    for execution in line:
        bound = flow_version_spec(execution.flow_version).concurrency
        if bound is not None and held >= bound:
            _set_reason(execution, WaitingReason.FLOW_CONCURRENCY)
            break
        if free is not None and started >= free:
            _set_reason(execution, WaitingReason.ACCOUNT_CONCURRENCY)
            break
        _start(execution)
        held += 1
        started += 1
    return started


def _set_reason(execution: Execution, reason: str) -> None:
    if execution.waiting_reason != reason:
        with locked_execution_work(execution) as work:
            work.set(waiting_reason=reason)
            transitions.record_status(execution)


def _start(execution: Execution) -> None:
    """A waiting execution takes its slot: its first node run is created, and enqueued on commit."""
    spec = flow_version_spec(execution.flow_version)
    first = execution.start_node if execution.start_node in spec.nodes else spec.start
    with locked_execution_work(execution) as work:
        work.set(waiting_reason="")
        transitions.record_status(execution)
        node_run = transitions.node_run_create(execution=execution, node_id=first, step=1)
    enqueue_node_run(node_run, spec.nodes[first])


def admit_all() -> int:
    """The sweep (periodic): admission for every account and flow with waiting executions — a safety net for an
    end whose admission was lost (its process died between the commit and the admission)."""
    pairs = list(
        _waiting()
        .values_list("account_id", "flow_id")
        .distinct()
        .order_by("account_id", "flow_id")[: MAX_FLOWS_PER_PASS * 10]
    )
    started = 0
    for account_id, flow_id in pairs:
        try:
            started += admit(account_id=account_id, flow_id=flow_id)
        except Exception:  # one account's failure must not stop the others'
            logger.exception("admission of flow %s failed", flow_id)
    return started
