"""Reads of schedules and triggers, always scoped to an account; another account's is simply not found."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.db.models import QuerySet

from accounts.models import Account
from core.errors import NotFound
from flows.models import Flow
from triggers.models import Schedule, Trigger

T = TypeVar("T", Schedule, Trigger)


def _get(model: type[T], account: Account, object_id: Any) -> T:
    """The account's schedule or trigger of a flow not deleted; NotFound alike for a malformed id, a missing
    one, another account's, or one of a deleted flow."""
    missing = NotFound(f"{model.__name__} not found.")
    try:
        key = uuid.UUID(str(object_id))
    except (ValueError, TypeError, AttributeError):
        raise missing
    found = model.objects.filter(account=account, id=key, flow__deleted_at__isnull=True).first()
    if found is None:
        raise missing
    return found


def schedule_list(*, account: Account, flow: Flow | None = None) -> QuerySet[Schedule]:
    queryset = Schedule.objects.filter(account=account).order_by("created_at", "id")
    return queryset.filter(flow=flow) if flow is not None else queryset


def schedule_get(*, account: Account, schedule_id: Any) -> Schedule:
    return _get(Schedule, account, schedule_id)


def trigger_list(*, account: Account, flow: Flow) -> QuerySet[Trigger]:
    return Trigger.objects.filter(account=account, flow=flow).order_by("created_at", "id")


def trigger_get(*, account: Account, trigger_id: Any) -> Trigger:
    return _get(Trigger, account, trigger_id)
