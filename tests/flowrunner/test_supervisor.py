"""The worker supervisor: a crashed or killed worker is started again, a clean or configuration exit is final."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from flowrunner.cli.supervisor import BACKOFF_FIRST, supervise

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
