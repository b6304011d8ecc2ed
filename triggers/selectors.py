"""Reads of schedules and triggers, always scoped to an account; another account's is simply not found."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from accounts.models import Account
from core.errors import NotFound
from flows.models import Flow
from triggers.models import Schedule, Trigger


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"{what} not found.")


def schedule_list(*, account: Account, flow: Flow | None = None) -> QuerySet[Schedule]:
    queryset = Schedule.objects.filter(account=account).order_by("created_at", "id")
    return queryset.filter(flow=flow) if flow is not None else queryset


def schedule_get(*, account: Account, schedule_id: Any) -> Schedule:
    schedule = Schedule.objects.filter(
        account=account, id=_uuid(schedule_id, "Schedule"), flow__deleted_at__isnull=True
    ).first()
    if schedule is None:
        raise NotFound("Schedule not found.")
    return schedule


def trigger_list(*, account: Account, flow: Flow) -> QuerySet[Trigger]:
    return Trigger.objects.filter(account=account, flow=flow).order_by("created_at", "id")


def trigger_get(*, account: Account, trigger_id: Any) -> Trigger:
    trigger = Trigger.objects.filter(
        account=account, id=_uuid(trigger_id, "Trigger"), flow__deleted_at__isnull=True
    ).first()
    if trigger is None:
        raise NotFound("Trigger not found.")
    return trigger
