"""Execution services: start a run (idempotently), cancel it, retry it from its failure."""

from __future__ import annotations

import contextlib
import copy
import uuid
from typing import Any

from django.db import IntegrityError, connection, transaction

from accounts.models import Account
from core import metrics
from core.errors import Conflict, NotFound, ValidationFailed
from executions import admission, callbacks, dispatch, idempotency, lifecycle, transitions
from executions.events import locked_execution_work
from executions.models import Execution, ExecutionStatus, NodeRun, NodeRunStatus
from executions.node_tasks import carries_context, enqueue_node_run, start_context
from flows.dsl.spec import FlowSpec
from flows.models import Flow, FlowVersion
from flows.selectors import flow_version_spec


def execution_start(
    *,
    account: Account,
    flow: Flow,
    user: Any = None,
    input: Any = None,
    idempotency_key: str | None = None,
    version: FlowVersion | None = None,
    retry_of: Execution | None = None,
    start_node: str | None = None,
    data: dict[str, Any] | None = None,
    node_outputs: dict[str, Any] | None = None,
    callback_url: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> tuple[Execution, bool]:
    """Create an execution and its first node run, enqueued on commit — or, beyond its flow's or account's
    concurrency bound, a queued execution that waits for admission. Returns (execution, created).

    `trigger` records what started it (default: the API, or the retried execution when `retry_of` is given).

    A repeated `idempotency_key` of the same account and flow, with the same input and within
    FLOWRUNNER_IDEMPOTENCY_TTL, returns the first execution unchanged; with another input → 422.
    `callback_url` (http/https, within the egress policy) receives the ExecutionStatus once the run ends.
    """
    if input is None:
        input = {}
    if not isinstance(input, dict):
        raise ValidationFailed(
            "`input` must be a JSON object.", details=[{"path": "input", "message": "expected an object"}]
        )
    if callback_url is not None:
        callback_url = callbacks.callback_url_validate(callback_url)
    if flow.deleted_at is not None:
        raise NotFound()
    digest = idempotency.key_digest(flow=flow, key=idempotency_key) if idempotency_key else None
    if digest:
        existing = idempotency.execution_for_key(account=account, digest=digest, input=input)
        if existing is not None:
            return existing, False
    version = version or flow.current_version
    if version is None:
        raise Conflict("The flow has no version to run.")
    spec: FlowSpec = flow_version_spec(version)
    first = start_node or spec.start
    if trigger is None:
        trigger = {"type": "retry", "retry_of": str(retry_of.id)} if retry_of is not None else {"type": "api"}
    try:
        # Unbounded and in autocommit, the start is one statement, its own transaction. Bounded, the admission's
        # lock and count share the insert's transaction; inside a caller's transaction a savepoint keeps a
        # repeated key's IntegrityError from aborting it.
        single = not admission.is_bounded(concurrency=spec.concurrency) and not connection.in_atomic_block
        with contextlib.nullcontext() if single else transaction.atomic():
            # Beyond a concurrency bound the execution waits, queued without a node run, for admission.
            waiting = admission.reason_to_wait(
                account_id=account.id, flow_id=flow.id, concurrency=spec.concurrency
            )
            execution = Execution(
                account=account,
                flow=flow,
                flow_version=version,
                input=input,
                data=copy.deepcopy(data if data is not None else input),
                node_outputs=node_outputs or {},
                idempotency_key=digest,
                retry_of=retry_of,
                trigger=trigger,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                steps=1,
                callback_url=callback_url or "",
                waiting_reason=waiting,
                start_node=first if waiting else "",
            )
            node = spec.nodes[first]
            # A pure first node runs ahead of its claim, from the document its task carries.
            ahead = not waiting and carries_context(execution, node)
            node_run = (
                None
                if waiting
                else NodeRun(
                    execution=execution, node_id=first, step=1, task_id=str(uuid.uuid4()) if ahead else ""
                )
            )
            started = transitions.execution_insert(execution=execution, node_run=node_run)
            if node_run is not None:
                context = (
                    start_context(execution, node, has_secrets=bool(started["has_secrets"]))
                    if ahead
                    else None
                )
                enqueue_node_run(node_run, node, context=context)
            transaction.on_commit(lambda: metrics.execution_started(str(trigger.get("type") or "api")))
    except IntegrityError:
        # A concurrent request with the same key won the insert: answer as if it had come first.
        existing = (
            idempotency.execution_for_key(account=account, digest=digest, input=input) if digest else None
        )
        if existing is None:
            raise
        return existing, False
    return execution, True


@transaction.atomic
def execution_cancel(*, execution: Execution) -> bool:
    """Cancel a queued or running execution: open node runs are canceled and their tasks revoked.

    A node already running finishes its work, but its result is discarded (its CAS from running fails).
    Returns False when the execution had already ended.
    """
    execution = Execution.objects.select_for_update().get(id=execution.id)
    with locked_execution_work(execution):
        if not transitions.execution_transition(
            execution, to=ExecutionStatus.CANCELED, expected=tuple(ExecutionStatus.ACTIVE), error="canceled"
        ):
            return False
        transaction.on_commit(lambda: metrics.execution_finished(ExecutionStatus.CANCELED))
        open_runs = list(
            execution.node_runs.filter(
                status__in=(NodeRunStatus.QUEUED, NodeRunStatus.RUNNING, NodeRunStatus.RETRYING)
            )
        )
        moved = transitions.node_runs_cancel(
            open_runs, account_id=execution.account_id, error="execution canceled"
        )
    dispatch.revoke_on_commit([run.task_id for run in moved])
    lifecycle.execution_ended(
        execution_id=execution.id, account_id=execution.account_id, flow_id=execution.flow_id
    )
    return True


def execution_retry(
    *, execution: Execution, user: Any = None, use_current_version: bool = False
) -> Execution:
    """Start a new execution linked to this failed one, resuming at the failed node with the outputs kept.

    The document and node outputs are the failed execution's at the time of failure (every succeeded node's
    output already merged), so succeeded nodes are not run again.
    """
    if execution.status not in (ExecutionStatus.FAILED, ExecutionStatus.CANCELED):
        raise Conflict("Only a failed or canceled execution can be retried.")
    failed = (
        execution.node_runs.filter(batch_index__isnull=True)
        .exclude(status=NodeRunStatus.SUCCEEDED)
        .order_by("-id")
        .first()
    )
    version = execution.flow.current_version if use_current_version else execution.flow_version
    spec = flow_version_spec(version)
    start_node = failed.node_id if failed is not None and failed.node_id in spec.nodes else spec.start
    data = copy.deepcopy(execution.data or {})
    data.pop("error", None)
    new, _ = execution_start(
        account=execution.account,
        flow=execution.flow,
        user=user,
        input=execution.input,
        version=version,
        retry_of=execution,
        start_node=start_node,
        data=data,
        node_outputs=copy.deepcopy(execution.node_outputs or {}),
    )
    return new
