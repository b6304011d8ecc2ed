"""The worker supervisor: a crashed or killed worker is started again, a clean or configuration exit is final."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowrunner.cli.supervisor import BACKOFF_FIRST, supervise
from tests.integration.conftest import live_database  # noqa: F401  (the test database the worker checks)

ROOT = Path(__file__).resolve().parents[2]


def _script(tmp_path: Path, codes: list[int]) -> list[str]:
    """A child that exits with codes[n] on its n-th start (counted in a file; negative: killed by that signal),
    then 0."""
    counter = tmp_path / "starts"
    code = (
        "import os, pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        f"codes = {codes!r}\n"
        "code = codes[n] if n < len(codes) else 0\n"
        "if code < 0:\n    os.kill(os.getpid(), -code)\n"
        "sys.exit(code)\n"
    )
    return [sys.executable, "-c", code]


def _starts(tmp_path: Path) -> int:
    return int((tmp_path / "starts").read_text())


def test_supervisor_restarts_a_crashed_worker_with_growing_backoff(tmp_path):
    # Given a worker that crashes twice (Celery's "Unrecoverable error" exit, then a SIGKILL) and then exits
    sleeps: list[float] = []
    lines: list[str] = []
    # When it is supervised
    code = supervise(_script(tmp_path, [1, -signal.SIGKILL]), sleep=sleeps.append, say=lines.append)
    # Then it was started three times, after growing pauses, and its clean exit ends supervision
    assert code == 0
    assert _starts(tmp_path) == 3
    assert sum(sleeps) >= BACKOFF_FIRST + 2 * BACKOFF_FIRST - 0.5, sleeps
    assert [line.split(" (pid")[0] for line in lines if "starting it again" in line] == [
        "the Celery worker"
    ] * 2
    assert "exited with code 1" in lines[1]
    assert "was killed by SIGKILL" in lines[3]


def test_supervisor_does_not_restart_a_configuration_failure(tmp_path):
    # Given a worker that refuses to start (exit 3: the encryption key does not match)
    lines: list[str] = []
    # When it is supervised
    code = supervise(_script(tmp_path, [3]), sleep=lambda _: None, say=lines.append)
    # Then its code is returned and it is not started again
    assert code == 3
    assert _starts(tmp_path) == 1


def test_supervisor_forwards_sigterm_and_stops(tmp_path):
    # Given a supervised child that finishes its warm shutdown on SIGTERM, then exits 0
    marker = tmp_path / "got-term"
    child = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(marker)!r}).write_text('x'), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    runner = (
        "import sys\nfrom flowrunner.cli.supervisor import supervise\n"
        f"sys.exit(supervise([sys.executable, '-c', {child!r}]))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", runner], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    assert process.stdout.readline() == "ready\n"
    # When the supervisor gets SIGTERM
    process.send_signal(signal.SIGTERM)
    # Then the child got it, and the supervisor exits with the child's code without restarting it
    assert process.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
    assert marker.exists()
    assert process.stderr.read().count("started the Celery worker") == 1


@pytest.mark.integration
def test_supervisor_restarts_a_killed_celery_worker(live_database, tmp_path):  # noqa: F811
    # Given `flowrunner worker` on a private broker, answering pings
    from django.conf import settings

    from tests.faults.steps import make_client_app, wait_until
    from tests.integration.processes import free_port
    from tests.services import RedisServer

    redis_server = RedisServer(port=free_port(), log_path=tmp_path / "redis.log")
    redis_server.start()
    client = make_client_app(redis_server.url)
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flowrunner.settings",
        "PYTHONPATH": str(ROOT),
        "FLOWRUNNER_ENV_FILE": os.devnull,
        "FLOWRUNNER_REDIS_URL": redis_server.url,
        "FLOWRUNNER_POSTGRES_DATABASE": str(db["NAME"]),
        "FLOWRUNNER_SECRET_KEY": settings.SECRET_KEY,
        "FLOWRUNNER_ENCRYPTION_KEY": settings.FLOWRUNNER_ENCRYPTION_KEY.hex(),
    }
    log = tmp_path / "worker.log"
    argv = [
        sys.executable,
        "-m",
        "flowrunner.cli",
        "worker",
        "-l",
        "info",
        "-n",
        "sup@%h",
        "-Q",
        "supervised",
    ]
    argv += ["--concurrency", "1", "--without-mingle", "--without-gossip"]
    node = f"sup@{socket.gethostname()}"

    def answers() -> bool:
        try:
            return any(node in reply for reply in client.control.ping(destination=[node], timeout=0.5) or [])
        except Exception:
            return False

    def pids() -> list[int]:
        return [int(pid) for pid in re.findall(r"started the Celery worker \(pid (\d+)\)", log.read_text())]

    with log.open("w") as out:
        supervisor = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(answers, 90, "the supervised worker's first ping", poll=0.2)
        first = pids()[-1]
        # When its Celery worker is killed (as an OOM killer would)
        os.kill(first, signal.SIGKILL)
        # Then the supervisor starts a new one, which answers pings
        wait_until(lambda: len(pids()) == 2, 30, "a second Celery worker")
        wait_until(answers, 90, "the restarted worker's ping", poll=0.2)
        assert "was killed by SIGKILL" in log.read_text()
        second = pids()[-1]
        assert second != first and supervisor.poll() is None
        # And SIGTERM to the supervisor is a warm shutdown of the worker, which is not restarted
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        assert len(pids()) == 2
        with pytest.raises(ProcessLookupError):
            os.kill(second, 0)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        client.close()
        redis_server.kill()
