"""Celery task of schedules: beat sends it with a schedule id; running it twice for one time starts one run."""

from __future__ import annotations

from celery import shared_task

from triggers import schedules


@shared_task(name="triggers.fire_schedule", ignore_result=True)
def fire_schedule(schedule_id: str) -> None:
    schedules.schedule_fire(schedule_id=schedule_id)
