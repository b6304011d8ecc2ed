"""Celery beat keeps its schedule file in the git-ignored state directory, not in the directory it runs in."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from tests.flowrunner.process_env import REPO, fresh_environment


def test_beat_keeps_its_schedule_under_the_state_directory(tmp_path: Path):
    # given beat started in a project directory, as `make beat` starts it
    environment = fresh_environment(
        tmp_path,
        FLOWRUNNER_POSTGRES_HOST="127.0.0.1",
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
    # when it has started and written its schedule
    state = tmp_path / ".flowrunner"
    try:
        deadline = time.monotonic() + 60
        while not list(state.glob("celerybeat-schedule*")):
            assert beat.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    # then the schedule is in .flowrunner/ (git-ignored), and nothing was left in the project directory
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith("celerybeat-schedule")] == []
    assert ".flowrunner/" in (REPO / ".gitignore").read_text().splitlines()
