"""The PeriodicTask behind each schedule: what django-celery-beat's DatabaseScheduler reads and fires."""

from __future__ import annotations

import json

from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from triggers.models import Schedule
from triggers.timing import cron_fields

FIRE_TASK = "triggers.fire_schedule"
# A firing message nobody took within this long is dropped: the next one, or the coalescing of missed firings
# into the latest scheduled time, covers it.
MIN_EXPIRY_SECONDS = 60


def _task_name(schedule: Schedule) -> str:
    return f"schedule:{schedule.id}"


def periodic_task_sync(schedule: Schedule) -> PeriodicTask:
    """Create or update the schedule's PeriodicTask (the caller saves the schedule's link to it)."""
    fields: dict = {
        "name": _task_name(schedule),
        "task": FIRE_TASK,
        "args": json.dumps([str(schedule.id)]),
        "kwargs": "{}",
        "enabled": schedule.enabled,
        "description": f"flow {schedule.flow_id}",
        "crontab": None,
        "interval": None,
    }
    if schedule.cron:
        minute, hour, day_of_month, month_of_year, day_of_week = cron_fields(schedule.cron)
        fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone=schedule.timezone,
        )
        fields["expire_seconds"] = MIN_EXPIRY_SECONDS
    else:
        seconds = schedule.interval_seconds or 0
        if float(seconds).is_integer():
            every, period = int(seconds), IntervalSchedule.SECONDS
        else:
            every, period = round(seconds * 1_000_000), IntervalSchedule.MICROSECONDS
        fields["interval"], _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        fields["expire_seconds"] = max(MIN_EXPIRY_SECONDS, int(seconds))
    task = schedule.periodic_task
    if task is None:
        task = PeriodicTask(**fields)
    else:
        for name, value in fields.items():
            setattr(task, name, value)
    task.save()
    return task


def periodic_task_delete(schedule: Schedule) -> None:
    PeriodicTask.objects.filter(name=_task_name(schedule)).delete()
