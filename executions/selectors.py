"""Reads of executions, always scoped to an account; another account's execution is simply not found."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import F, QuerySet

from accounts.models import Account
from accounts.redaction import Redactor
from accounts.selectors import secret_values
from core.errors import NotFound, ValidationFailed
from executions.models import Execution, ExecutionEvent, NodeRun
from executions.status import execution_status


def execution_list(
    *,
    account: Account,
    flow_id: str | None = None,
    status: str | None = None,
    schedule_id: str | None = None,
) -> QuerySet[Execution]:
    queryset = (
        Execution.objects.filter(account=account).select_related("flow_version").order_by("-created_at")
    )
    # A parameter given empty is still given: `?status=` is not a status, `?flow_id=` names no flow.
    if flow_id is not None:
        queryset = queryset.filter(flow_id=flow_id)
    if status is not None:
        valid = {choice for choice, _ in Execution._meta.get_field("status").choices}
        if status not in valid:
            raise ValidationFailed(
                f"Unknown status {status!r}.",
                details=[{"path": "status", "message": f"one of {sorted(valid)}"}],
            )
        queryset = queryset.filter(status=status)
    if schedule_id is not None:
        try:
            key = uuid.UUID(schedule_id)
        except ValueError:
            raise ValidationFailed(
                "`schedule_id` is not a valid schedule id.",
                details=[{"path": "schedule_id", "message": "expected a UUID"}],
            )
        queryset = queryset.filter(trigger__schedule_id=str(key))
    return queryset


def execution_get(*, account: Account | uuid.UUID | str, execution_id: Any) -> Execution:
    """The account's execution; NotFound alike for a malformed id, a missing one or another account's."""
    try:
        key = uuid.UUID(str(execution_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFound("Execution not found.")
    account_id = account.id if isinstance(account, Account) else account
    execution = Execution.objects.select_related("flow_version").filter(id=key, account_id=account_id).first()
    if execution is None:
        raise NotFound("Execution not found.")
    return execution


def execution_current_status(*, execution: Execution) -> str:
    """The status as stored now (one column read: cheap enough to poll), whatever the instance held."""
    return Execution.objects.filter(id=execution.id).values_list("status", flat=True).get()


def redacted_status(execution: Execution) -> dict[str, Any]:
    """The ExecutionStatus with the account's secret values masked (a script may have put one in the document)."""
    return Redactor(secret_values(account=execution.account_id)).data(execution_status(execution))


def execution_events(*, execution: Execution, since: int = 0) -> QuerySet[ExecutionEvent]:
    return ExecutionEvent.objects.filter(execution=execution, seq__gt=since).order_by("seq")


def execution_node_runs(*, execution: Execution) -> QuerySet[NodeRun]:
    """One row per attempt, in start order (runs not started yet last, in creation order)."""
    return NodeRun.objects.filter(execution=execution).order_by(F("started_at").asc(nulls_last=True), "id")
