"""Schedules over REST and their firing: one run per scheduled time, missed times coalesced, beat's task kept."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from executions.models import Execution
from flows.services import flow_create, flow_delete
from triggers.models import Schedule, ScheduleFiring
from triggers.schedules import schedule_fire

pytestmark = pytest.mark.usefixtures("sent")

FLOW = """
metadata: {name: scheduled flow}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


@pytest.fixture
def flow(member):
    account, user = member
    return flow_create(account=account, user=user, content=FLOW)


def _create(api, flow, **body):
    return api.post(f"/api/v1/flows/{flow.id}/schedules", body, format="json")


def test_schedules_create_an_interval_schedule_and_its_periodic_task(api, flow):
    # When an interval schedule is created
    response = _create(api, flow, interval="30s", input={"x": 1})
    # Then it answers the Schedule, with its next run one interval from now, and beat has a task for it
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "id",
        "flow_id",
        "cron",
        "interval",
        "timezone",
        "input",
        "enabled",
        "callback_url",
        "next_run_at",
        "last_run_at",
        "last_execution_id",
        "created_at",
    }
    assert body["interval"] == "30s" and body["cron"] is None and body["timezone"] == "UTC"
    assert body["enabled"] is True and body["last_run_at"] is None and body["input"] == {"x": 1}
    task = PeriodicTask.objects.get(name=f"schedule:{body['id']}")
    assert task.task == "triggers.fire_schedule" and json.loads(task.args) == [body["id"]]
    assert task.interval.every == 30 and task.enabled


def test_schedules_cron_with_timezone_and_patch_and_delete(api, flow):
    # Given a cron schedule in New York
    body = _create(api, flow, cron="0 9 * * 1-5", timezone="America/New_York").json()
    task = PeriodicTask.objects.get(name=f"schedule:{body['id']}")
    assert task.crontab.hour == "9" and str(task.crontab.timezone) == "America/New_York"
    # When it is switched to an interval, disabled, then deleted
    patched = api.patch(
        f"/api/v1/schedules/{body['id']}", {"interval": "1m", "enabled": False}, format="json"
    )
    # Then the schedule and its task follow
    assert patched.status_code == 200, patched.content
    assert patched.json()["cron"] is None and patched.json()["interval"] == "1m"
    assert patched.json()["next_run_at"] is None
    task.refresh_from_db()
    assert task.crontab is None and task.interval.every == 60 and not task.enabled
    assert api.get(f"/api/v1/flows/{flow.id}/schedules").json()["count"] == 1
    assert api.delete(f"/api/v1/schedules/{body['id']}").status_code == 204
    assert not PeriodicTask.objects.filter(name=f"schedule:{body['id']}").exists()
    assert api.get(f"/api/v1/schedules/{body['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "cron"),
        ({"cron": "* * * * *", "interval": "1s"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"interval": "0.5s"}, "interval"),
        ({"interval": "1s", "timezone": "Nowhere/City"}, "timezone"),
        ({"interval": "1s", "input": [1]}, "input"),
        ({"interval": "1s", "every": "1s"}, "every"),
    ],
)
def test_schedules_refuse_bad_bodies_and_create_nothing(api, flow, body, path):
    response = _create(api, flow, **body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"][0]["path"] == path
    assert (
        Schedule.objects.count() == 0
        and PeriodicTask.objects.filter(task="triggers.fire_schedule").count() == 0
    )


def test_schedules_of_another_account_are_not_found(api, other_api, flow):
    schedule_id = _create(api, flow, interval="5s").json()["id"]
    assert other_api.get(f"/api/v1/schedules/{schedule_id}").status_code == 404
    assert (
        other_api.patch(f"/api/v1/schedules/{schedule_id}", {"enabled": False}, format="json").status_code
        == 404
    )
    assert other_api.delete(f"/api/v1/schedules/{schedule_id}").status_code == 404
    assert other_api.get(f"/api/v1/flows/{flow.id}/schedules").status_code == 404
    assert _create(other_api, flow, interval="5s").status_code == 404


def test_schedule_fire_starts_one_run_per_scheduled_time(api, flow, django_capture_on_commit_callbacks):
    # Given an interval schedule of 10 s
    schedule = Schedule.objects.get(id=_create(api, flow, interval="10s", input={"k": "v"}).json()["id"])
    at = schedule.anchor_at + timedelta(seconds=10.2)
    # When beat fires it twice for the same time (two beats, or a redelivered message), then for the next one
    with django_capture_on_commit_callbacks(execute=True):
        first = schedule_fire(schedule_id=schedule.id, now=at)
        again = schedule_fire(schedule_id=schedule.id, now=at + timedelta(seconds=0.5))
        later = schedule_fire(schedule_id=schedule.id, now=at + timedelta(seconds=10))
    # Then the first and third start a run, recorded as the schedule's; the duplicate starts nothing
    assert first is not None and again is None and later is not None
    assert Execution.objects.count() == 2
    assert first.input == {"k": "v"}
    assert first.trigger == {
        "type": "schedule",
        "schedule_id": str(schedule.id),
        "scheduled_for": (schedule.anchor_at + timedelta(seconds=10)).isoformat(),
    }
    schedule.refresh_from_db()
    assert schedule.last_execution_id == later.id
    assert schedule.next_run_at == schedule.anchor_at + timedelta(seconds=30)
    body = api.get(f"/api/v1/schedules/{schedule.id}").json()
    assert body["last_execution_id"] == str(later.id)
    listed = api.get("/api/v1/executions", {"schedule_id": str(schedule.id)}).json()
    assert listed["count"] == 2


def test_schedule_fire_coalesces_missed_times_into_one_run(api, flow):
    # Given a 1 s schedule whose beat was down for a minute, then sent its backlog at once
    schedule = Schedule.objects.get(id=_create(api, flow, interval="1s").json()["id"])
    resumed = schedule.anchor_at + timedelta(seconds=60.3)
    # When the backlog's messages all run within the same second
    started = [
        schedule_fire(schedule_id=schedule.id, now=resumed + timedelta(milliseconds=n)) for n in range(5)
    ]
    # Then one run, for the latest scheduled time; the 59 missed ones are not replayed
    assert len([e for e in started if e is not None]) == 1
    assert list(ScheduleFiring.objects.values_list("scheduled_for", flat=True)) == [
        schedule.anchor_at + timedelta(seconds=60)
    ]


def test_schedule_fire_of_a_disabled_schedule_or_deleted_flow_starts_nothing(api, flow):
    schedule_id = _create(api, flow, interval="1s", enabled=False).json()["id"]
    later = timezone.now() + timedelta(seconds=5)
    assert schedule_fire(schedule_id=schedule_id, now=later) is None
    api.patch(f"/api/v1/schedules/{schedule_id}", {"enabled": True}, format="json")
    flow_delete(flow=flow)
    assert schedule_fire(schedule_id=schedule_id, now=later + timedelta(seconds=5)) is None
    assert schedule_fire(schedule_id="00000000-0000-0000-0000-000000000000") is None
    assert Execution.objects.count() == 0


def test_schedule_fire_of_a_cron_schedule_uses_the_cron_time(api, flow):
    schedule = Schedule.objects.get(id=_create(api, flow, cron="*/5 * * * *").json()["id"])
    base = schedule.anchor_at.replace(second=0, microsecond=0)
    tick = base + timedelta(minutes=5 - base.minute % 5)
    execution = schedule_fire(schedule_id=schedule.id, now=tick + timedelta(seconds=1))
    assert execution.trigger["scheduled_for"] == tick.isoformat()
    assert schedule_fire(schedule_id=schedule.id, now=tick + timedelta(seconds=30)) is None


def test_schedules_fire_due_fires_what_is_due_once_for_embedded_mode(api, flow):
    # Given two schedules, one due, one disabled
    from triggers.schedules import schedules_fire_due

    due = Schedule.objects.get(id=_create(api, flow, interval="5s").json()["id"])
    _create(api, flow, interval="5s", enabled=False)
    at = due.next_run_at + timedelta(milliseconds=100)
    # When the embedded loop ticks twice within the same second
    started = [schedules_fire_due(now=at), schedules_fire_due(now=at + timedelta(milliseconds=500))]
    # Then one run, and the next one is due an interval later
    assert started == [1, 0]
    due.refresh_from_db()
    assert Execution.objects.count() == 1 and due.next_run_at == at - timedelta(milliseconds=100) + timedelta(
        seconds=5
    )


def test_schedule_and_hook_pass_their_callback_url_to_the_run(api, flow, settings):
    # Given a schedule and a hook that name a callback URL (a local one, allowed here)
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = True
    body = _create(api, flow, interval="5s", callback_url="http://127.0.0.1:9/done").json()
    hook = api.post(
        f"/api/v1/flows/{flow.id}/triggers", {"callback_url": "http://127.0.0.1:9/hook"}, format="json"
    )
    schedule = Schedule.objects.get(id=body["id"])
    # When each starts a run
    fired = schedule_fire(schedule_id=schedule.id, now=schedule.next_run_at)
    delivered = APIClient().post(
        f"/api/v1/hooks/{hook.json()['id']}",
        {},
        format="json",
        headers={"Authorization": f"Bearer {hook.json()['secret']}"},
    )
    # Then both runs carry it
    assert body["callback_url"] == "http://127.0.0.1:9/done"
    assert fired.callback_url == "http://127.0.0.1:9/done"
    assert (
        Execution.objects.get(id=delivered.json()["execution_id"]).callback_url == "http://127.0.0.1:9/hook"
    )


def test_schedule_callback_url_is_checked_like_the_run_requests(api, flow, settings):
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    response = _create(api, flow, interval="5s", callback_url="http://127.0.0.1:9/done")
    assert response.status_code == 400 and response.json()["error"]["details"][0]["path"] == "callback_url"
    assert Schedule.objects.count() == 0
