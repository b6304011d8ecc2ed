"""Schedule services: create, change and delete a schedule (and its PeriodicTask), and fire it once per time."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from core.errors import ApplicationError, NotFound, ValidationFailed
from executions.callbacks import callback_url_validate
from executions.models import Execution
from executions.services import execution_start
from flows.models import Flow
from triggers import beat, timing
from triggers.models import Schedule, ScheduleFiring

logger = logging.getLogger(__name__)

_UNSET: Any = object()


def _next_run(schedule: Schedule, after: datetime) -> datetime | None:
    if not schedule.enabled:
        return None
    if schedule.cron:
        return timing.cron_next(schedule.cron, schedule.timezone, after)
    return timing.interval_next(schedule.anchor_at, schedule.interval_seconds, after)


def _set_timing(schedule: Schedule, *, cron: str | None, interval: str | None, tz: str) -> None:
    """Exactly one of cron / interval; the grid of an interval starts now."""
    cron = cron or None
    interval = interval or None
    if (cron is None) == (interval is None):
        raise ValidationFailed(
            "Give exactly one of `cron` or `interval`.",
            details=[{"path": "cron", "message": "exactly one of cron or interval is required"}],
        )
    timing.zone(tz)
    if cron is not None:
        schedule.cron = " ".join(timing.cron_fields(cron))
        schedule.interval, schedule.interval_seconds = "", None
    else:
        schedule.interval_seconds = timing.interval_seconds(interval)
        schedule.interval, schedule.cron = interval.strip(), ""
    schedule.timezone = tz
    schedule.anchor_at = timezone.now()


def _check_input(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed(
            "`input` must be a JSON object.", details=[{"path": "input", "message": "expected an object"}]
        )
    return value


@transaction.atomic
def schedule_create(
    *,
    account: Account,
    flow: Flow,
    user: Any = None,
    cron: str | None = None,
    interval: str | None = None,
    timezone_name: str = "UTC",
    input: Any = None,
    enabled: bool = True,
    callback_url: str | None = None,
) -> Schedule:
    """A new schedule of the flow and its PeriodicTask (beat picks it up within its sync interval)."""
    if flow.deleted_at is not None:
        raise NotFound()
    schedule = Schedule(
        account=account,
        flow=flow,
        input=_check_input(input),
        enabled=enabled,
        callback_url=_callback(callback_url),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    _set_timing(schedule, cron=cron, interval=interval, tz=timezone_name or "UTC")
    return _save(schedule)


@transaction.atomic
def schedule_update(
    *,
    schedule: Schedule,
    cron: str | None = _UNSET,
    interval: str | None = _UNSET,
    timezone_name: str = _UNSET,
    input: Any = _UNSET,
    enabled: bool = _UNSET,
    callback_url: str | None = _UNSET,
) -> Schedule:
    """Change some fields; giving `cron` clears `interval` and the reverse (a PATCH names the one it wants)."""
    schedule = Schedule.objects.select_for_update().get(id=schedule.id)
    if cron is not _UNSET or interval is not _UNSET or timezone_name is not _UNSET:
        new_cron = cron if cron is not _UNSET else (None if interval is not _UNSET else schedule.cron)
        new_interval = (
            interval if interval is not _UNSET else (None if cron is not _UNSET else schedule.interval)
        )
        tz = timezone_name if timezone_name is not _UNSET else schedule.timezone
        _set_timing(schedule, cron=new_cron, interval=new_interval, tz=tz or "UTC")
    if input is not _UNSET:
        schedule.input = _check_input(input)
    if enabled is not _UNSET:
        schedule.enabled = bool(enabled)
    if callback_url is not _UNSET:
        schedule.callback_url = _callback(callback_url)
    return _save(schedule)


def _save(schedule: Schedule) -> Schedule:
    """Store the schedule with its next run, then its beat entry (which points at the stored row)."""
    schedule.next_run_at = _next_run(schedule, timezone.now())
    schedule.save()
    schedule.periodic_task = beat.periodic_task_sync(schedule)
    schedule.save(update_fields=["periodic_task"])
    return schedule


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    """The schedule and its PeriodicTask; the executions it started stay (their trigger keeps its id)."""
    beat.periodic_task_delete(schedule)
    schedule.delete()


def _callback(url: str | None) -> str | None:
    """The completion callback URL, checked by the rule the run request uses (http/https, egress policy)."""
    return callback_url_validate(url) if url else None


def schedule_fire(*, schedule_id: Any, now: datetime | None = None) -> Execution | None:
    """Start the run of the schedule's latest scheduled time at or before `now`, unless that time already has
    one. Beat twice, a redelivered message or a backlog after an outage all map to the same scheduled time,
    and its ScheduleFiring row is unique: at most one execution per (schedule, scheduled time). Missed times
    are not replayed: after an outage the latest one runs once."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("flow", "account")
            .filter(id=schedule_id)
            .first()
        )
        if schedule is None or not schedule.enabled or schedule.flow.deleted_at is not None:
            return None
        if schedule.cron:
            slot = timing.cron_previous(schedule.cron, schedule.timezone, now)
            if slot < schedule.anchor_at - timing.CRON_EARLY_TOLERANCE:
                return None
        else:
            slot = timing.interval_previous(schedule.anchor_at, schedule.interval_seconds, now)
            if slot is None:
                return None
        try:
            with transaction.atomic():
                firing = ScheduleFiring.objects.create(schedule=schedule, scheduled_for=slot)
        except IntegrityError:
            # This time already has its run; only the displayed next time may lag behind.
            next_run = _next_run(schedule, max(now, slot))
            if schedule.next_run_at != next_run:
                schedule.next_run_at = next_run
                schedule.save(update_fields=["next_run_at", "updated_at"])
            return None
        try:
            with transaction.atomic():
                execution, _ = execution_start(
                    account=schedule.account,
                    flow=schedule.flow,
                    input=schedule.input,
                    trigger={
                        "type": "schedule",
                        "schedule_id": str(schedule.id),
                        "scheduled_for": slot.isoformat(),
                    },
                    callback_url=schedule.callback_url or None,
                )
        except ApplicationError as exc:
            # The flow cannot run (no version, a callback URL no longer allowed): the time is spent, not retried.
            logger.warning("schedule %s could not start a run for %s: %s", schedule.id, slot.isoformat(), exc)
            execution = None
        firing.execution = execution
        firing.save(update_fields=["execution"])
        schedule.last_run_at = now
        if execution is not None:
            schedule.last_execution = execution
        schedule.next_run_at = _next_run(schedule, max(now, slot))
        schedule.save(update_fields=["last_run_at", "last_execution", "next_run_at", "updated_at"])
        return execution


def schedules_fire_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Fire every enabled schedule whose next run is due: what beat does, for embedded mode (no beat).
    Returns how many runs started."""
    now = now or timezone.now()
    due = Schedule.objects.filter(
        enabled=True, next_run_at__lte=now, flow__deleted_at__isnull=True
    ).values_list("id", flat=True)[:limit]
    return sum(1 for schedule_id in list(due) if schedule_fire(schedule_id=schedule_id, now=now) is not None)
