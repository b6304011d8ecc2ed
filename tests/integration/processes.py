"""The live stack's child processes: each in its own process group, with its log file, and their environment.

Every child is started in its own session (its own process group): killing a worker's group kills its prefork
children too, as a crash of the whole container would. A child dies with pytest on Linux (`PR_SET_PDEATHSIG`),
even if pytest itself is SIGKILLed.

The children run flowrunner.settings (not tests/settings.py): `children_environment()` gives them exactly the
FlowRunner configuration of the test process's test database, Redis db, SECRET_KEY and encryption key.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Faster than production so recovery tests do not wait half a minute; overridable per stack.
DEFAULT_STACK_ENV = {
    "FLOWRUNNER_REAPER_INTERVAL": "1s",
    "FLOWRUNNER_STALE_AFTER": "10s",
    # A runaway loop fails in seconds rather than after the production default of 1000 steps.
    "FLOWRUNNER_MAX_STEPS": "200",
    # Flows under test call servers the test runs on loopback, which a shared server refuses by default; the
    # egress tests start a worker of their own with the default policy.
    "FLOWRUNNER_HTTP_ALLOW_PRIVATE": "true",
    # Completion callbacks retried after 200ms, 400ms, ... rather than 10s, 20s, ...
    "FLOWRUNNER_CALLBACK_RETRY_WAIT": "200ms",
}
STARTUP_TIMEOUT = float(os.environ.get("FLOWRUNNER_IT_STARTUP_TIMEOUT", "90"))
STOP_TIMEOUT = 10.0
TAIL_LINES = 80


class StackError(RuntimeError):
    """The stack did not come up (the message carries the children's log tails)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGKILL this child when the thread that spawned it (pytest) dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class Child:
    """One child process (its own process group) and its log file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        # The group id is the child's pid (start_new_session); it outlives the leader while members remain.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def signal_leader(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def group_alive(self) -> bool:
        if self.popen is None:
            return False
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the group (Celery: warm shutdown), then SIGKILL whatever is left after `timeout`."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.popen.poll()
            if not self.group_alive():
                break
            time.sleep(0.05)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def tail(self, lines: int = TAIL_LINES) -> str:
        return tail(self.log_path, lines)


def children_environment() -> dict[str, str]:
    """The children's environment, derived from the test process's (already test-database) settings: this
    process's variables without FlowRunner's, then exactly the FlowRunner configuration below."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if not getattr(settings, "REDIS_URL", None):
        raise StackError(
            "integration tests need Redis: set FLOWRUNNER_REDIS_URL, or let the tests.services plugin "
            "(pyproject.toml's addopts) start one"
        )
    env = {
        key: value
        for key, value in os.environ.items()
        # The children get exactly the FlowRunner configuration below, nothing inherited by accident.
        if not key.startswith("FLOWRUNNER_") and key not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "flowrunner.settings",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            # A developer's .env must not leak into the children: point python-dotenv at an empty file.
            "FLOWRUNNER_ENV_FILE": os.devnull,
            "FLOWRUNNER_POSTGRES_HOST": str(db["HOST"]),
            "FLOWRUNNER_POSTGRES_PORT": str(db.get("PORT") or 5432),
            "FLOWRUNNER_POSTGRES_USER": str(db.get("USER") or ""),
            "FLOWRUNNER_POSTGRES_PASSWORD": str(db.get("PASSWORD") or ""),
            # pytest-django has renamed NAME to the test database by now (test_<name>).
            "FLOWRUNNER_POSTGRES_DATABASE": str(db["NAME"]),
            "FLOWRUNNER_POSTGRES_SSL_MODE": str(db.get("OPTIONS", {}).get("sslmode", "prefer")),
            "FLOWRUNNER_REDIS_URL": settings.REDIS_URL,
            # Shared with the test process: what it encrypts or signs, the children can read.
            "FLOWRUNNER_SECRET_KEY": settings.SECRET_KEY,
            "FLOWRUNNER_ENCRYPTION_KEY": settings.FLOWRUNNER_ENCRYPTION_KEY.hex(),
            "FLOWRUNNER_ALLOW_SIGNUP": "true",
            "FLOWRUNNER_DEBUG": "false",
            "FLOWRUNNER_ALLOWED_HOSTS": "127.0.0.1,localhost,[::1]",
            "FLOWRUNNER_LOG_LEVEL": "INFO",
            # /health shows the worker count only to staff or to this token.
            "FLOWRUNNER_HEALTH_TOKEN": secrets.token_urlsafe(24),
            # /metrics answers only to this token.
            "FLOWRUNNER_METRICS_TOKEN": secrets.token_urlsafe(24),
        }
    )
    env.update(DEFAULT_STACK_ENV)
    return env


def default_queues() -> tuple[str, ...]:
    """The queues a plain `celery worker` would consume: the app's declared queues, else the default one."""
    from flowrunner.celery import app

    declared = app.conf.task_queues
    if declared:
        names = [getattr(queue, "name", queue) for queue in declared]
        return tuple(str(name) for name in names)
    return (app.conf.task_default_queue or "celery",)


@contextlib.contextmanager
def quiet_httpx():
    """Polling loops would flood the captured log with one httpx INFO line per attempt."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
