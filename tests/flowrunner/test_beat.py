"""Celery beat reads its periodic tasks from PostgreSQL (django-celery-beat), leaving no schedule file behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection
from django_celery_beat.models import PeriodicTask

from tests.flowrunner.process_env import fresh_environment


def test_beat_keeps_its_schedule_in_the_database(tmp_path: Path, transactional_db):
    # given beat started in a project directory, as `make beat` starts it, on the test database
    database = connection.settings_dict
    environment = fresh_environment(
        tmp_path,
        FLOWRUNNER_POSTGRES_HOST=database["HOST"] or "127.0.0.1",
        FLOWRUNNER_POSTGRES_PORT=str(database["PORT"] or 5432),
        FLOWRUNNER_POSTGRES_USER=database["USER"] or "postgres",
        FLOWRUNNER_POSTGRES_PASSWORD=database["PASSWORD"] or "",
        FLOWRUNNER_POSTGRES_DATABASE=database["NAME"],
        FLOWRUNNER_REDIS_URL=settings.REDIS_URL or "redis://127.0.0.1:6379/0",
    )
    log = tmp_path / "beat.log"
    with log.open("w") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "flowrunner", "beat", "-l", "info"],
            cwd=tmp_path,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # when it has started and installed the reaper
    try:
        deadline = time.monotonic() + 60
        while not PeriodicTask.objects.filter(name="reaper", task="flowrunner.reap").exists():
            assert beat.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        # Its clean shutdown is not what this test is about (under load beat may take longer than this).
        beat.terminate()
        try:
            beat.wait(timeout=30)
        except subprocess.TimeoutExpired:
            beat.kill()
            beat.wait(timeout=30)
    # then the reaper is a database row beat fires, and no schedule file was written anywhere under it
    assert "DatabaseScheduler" in log.read_text()
    assert [path for path in tmp_path.rglob("celerybeat-schedule*")] == []
