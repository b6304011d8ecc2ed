"""Real-process harness for integration tests: daphne, Celery workers and beat as child processes.

The children run the project's own entry points (`python -m daphne`, `python -m celery`) against the test
process's PostgreSQL *test* database (`test_<name>`, created by pytest-django) and the test process's Redis
db, with the test process's SECRET_KEY and encryption key, so what a test writes through the ORM (committed,
through the `live_db` fixture, in autocommit) or encrypts, the children read, and tasks the test process enqueues
reach the children's workers.

Every child is started in its own session (its own process group): killing a worker's group kills its prefork
children too, as a crash of the whole container would. Teardown is guaranteed three ways: the fixture's
finalizer (`stop_all`), an `atexit` hook, and on Linux `PR_SET_PDEATHSIG` so a child dies with pytest even if
pytest itself is SIGKILLed.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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

# Every stack ever started in this interpreter: the atexit hook kills whatever is still alive.
_STACKS: weakref.WeakSet[LiveStack] = weakref.WeakSet()


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


@dataclass(eq=False)
class LiveStack:
    """daphne + Celery workers (+ beat) running as real processes against the test database and Redis.

    Build it with `LiveStack.from_django_settings(...)` inside a session that already set up the test
    database (the `live_stack` fixture does this), then `start()`.
    """

    workdir: Path
    env: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 0
    default_workers: tuple[str, ...] = ("w1",)
    beat: bool = True
    base_queues: tuple[str, ...] = ("celery",)
    children: dict[str, Child] = field(default_factory=dict)
    worker_queues: dict[str, tuple[str, ...]] = field(default_factory=dict)
    worker_env: dict[str, dict[str, str]] = field(default_factory=dict)
    exclusive_workers: set[str] = field(default_factory=set)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_django_settings(
        cls,
        workdir: Path,
        *,
        workers: int = 1,
        beat: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> LiveStack:
        """Derive the children's environment from the test process's (already test-database) settings."""
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
        env.update(extra_env or {})
        return cls(
            workdir=workdir,
            env=env,
            default_workers=tuple(f"w{i}" for i in range(1, workers + 1)),
            beat=beat,
            base_queues=_default_queues(),
        )

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/api/v1/ws"

    def client(self, auth: tuple[str, str] | None = None, **kwargs) -> httpx.Client:
        """An httpx client rooted at /api/v1 (`client.get("/health")`)."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.api_url, auth=auth, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> LiveStack:
        _STACKS.add(self)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.flush_redis()
        self.port = self.port or free_port()
        try:
            self._spawn("web", self.web_argv())
            for name in self.default_workers:
                self._spawn_worker(name, ())
            if self.beat:
                self.start_beat()
            self.wait_healthy(min_workers=len(self.default_workers))
        except StackError:
            self.stop_all()  # the error's message already carries the log tails
            raise
        except BaseException:
            print(self.logs_report(), file=sys.stderr)
            self.stop_all()
            raise
        return self

    def flush_redis(self) -> None:
        """Empty the stack's Redis db: no broker messages, chord state or channel groups of an earlier run."""
        import redis

        client = redis.Redis.from_url(self.env["FLOWRUNNER_REDIS_URL"])
        try:
            client.flushdb()
        finally:
            client.close()

    def stop_all(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()

    def kill_all_now(self) -> None:
        """atexit / emergency path: SIGKILL every group, no waiting."""
        for child in self.children.values():
            child.signal_group(signal.SIGKILL)

    # -- workers -----------------------------------------------------------------------------------

    def worker_hostname(self, name: str) -> str:
        """The Celery node name of worker `name` (`-n name@%h`)."""
        return f"{name}@{socket.gethostname()}"

    def start_worker(
        self,
        name: str,
        queues: Iterable[str] = (),
        *,
        wait: bool = True,
        concurrency: int = 2,
        env: Mapping[str, str] | None = None,
        default_queues: bool = True,
        args: Iterable[str] = (),
    ):
        """Start (or restart) worker `name`, consuming the default queues (unless `default_queues` is false)
        plus `queues`, with `env` over the stack's environment and `args` added to its command line; wait for
        its ping."""
        existing = self.children.get(f"worker-{name}")
        if existing is not None and existing.alive():
            raise StackError(f"worker {name} is already running (pid {existing.pid})")
        if env is not None:
            self.worker_env[name] = dict(env)
        if not default_queues:
            self.exclusive_workers.add(name)
        child = self._spawn_worker(name, tuple(queues), concurrency=concurrency, args=tuple(args))
        if wait:
            self.wait_for_workers([name])
        return child

    def start_web(self, name: str, *, env: Mapping[str, str] | None = None) -> str:
        """Start another daphne (child `name`) with `env` over the stack's environment; its base URL once it
        answers /health. Stop it with `stop_child(name)`."""
        port = free_port()
        self._spawn(
            name,
            ["-m", "daphne", "-b", self.host, "-p", str(port), "flowrunner.asgi:application"],
            env=env,
        )
        base_url = f"http://{self.host}:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with self._quiet_httpx():
            while True:
                try:
                    if httpx.get(f"{base_url}/api/v1/health", timeout=2).status_code < 500:
                        return base_url
                except httpx.HTTPError:
                    pass
                if not self.children[name].alive() or time.monotonic() > deadline:
                    raise StackError(f"{name} did not answer on {base_url}:\n{self.children[name].tail()}")
                time.sleep(0.2)

    def stop_child(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        self.children[name].stop(timeout)

    def kill_worker(self, name: str, sig: int = signal.SIGKILL, whole_group: bool = True) -> None:
        """Send `sig` to worker `name`; by default SIGKILL to its whole group (main process and pool).

        With `whole_group=False` only the main process gets the signal (e.g. SIGTERM for a warm shutdown, or
        SIGKILL of the parent alone). Returns once a SIGKILLed group is gone; other signals return at once.
        """
        child = self.children[f"worker-{name}"]
        if whole_group:
            child.signal_group(sig)
        else:
            child.signal_leader(sig)
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + STOP_TIMEOUT
            target = child.group_alive if whole_group else child.alive
            while target() and time.monotonic() < deadline:
                time.sleep(0.02)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=STOP_TIMEOUT)

    def stop_worker(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after `timeout`."""
        self.children[f"worker-{name}"].stop(timeout)

    def running_workers(self) -> list[str]:
        return [
            name.removeprefix("worker-")
            for name, child in self.children.items()
            if name.startswith("worker-") and child.alive()
        ]

    def ensure_default_workers(self) -> None:
        """Restart any default worker a previous test killed, and wait until all of them answer."""
        for name in self.default_workers:
            child = self.children.get(f"worker-{name}")
            if child is None or not child.alive():
                if child is not None:
                    child.stop(timeout=1)  # reap leftovers of its group
                self._spawn_worker(name, self.worker_queues.get(name, ()))
        self.wait_for_workers(list(self.default_workers))

    def wait_for_workers(self, names: Iterable[str], timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until every named worker answers a Celery ping (through the test process's broker)."""
        from flowrunner.celery import app

        wanted = {self.worker_hostname(name) for name in names}
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while True:
            self._check_children_alive(only=[f"worker-{n}" for n in names])
            try:
                replies = app.control.ping(destination=sorted(wanted), timeout=0.5) or []
            except Exception:
                replies = []
            seen = {host for reply in replies for host in reply}
            if wanted <= seen:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"workers {sorted(wanted - seen)} did not answer a ping\n{self.logs_report()}"
                )
            time.sleep(0.2)

    def web_argv(self) -> list[str]:
        """The web process's arguments after the interpreter: daphne on this stack's port."""
        return ["-m", "daphne", "-b", self.host, "-p", str(self.port), "flowrunner.asgi:application"]

    # -- beat --------------------------------------------------------------------------------------

    def start_beat(self, name: str = "beat") -> Child:
        """Celery beat on the database scheduler; another `name` starts a second one beside it."""
        return self._spawn(name, ["-m", "celery", "-A", "flowrunner", "beat", "-l", "info"])

    def stop_beat(self, name: str = "beat") -> None:
        if name in self.children:
            self.children[name].stop()

    # -- health ------------------------------------------------------------------------------------

    def health(self, *, details: bool = True) -> httpx.Response:
        """GET /api/v1/health, with the stack's health token (database, broker, workers) or anonymously."""
        headers = {"Authorization": f"Bearer {self.env['FLOWRUNNER_HEALTH_TOKEN']}"} if details else {}
        return httpx.get(f"{self.api_url}/health", headers=headers, timeout=5.0)

    @contextlib.contextmanager
    def _quiet_httpx(self):
        """Polling loops would flood the captured log with one httpx INFO line per attempt."""
        logger = logging.getLogger("httpx")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)

    def wait_healthy(self, min_workers: int = 1, timeout: float = STARTUP_TIMEOUT) -> dict:
        """Wait until GET /api/v1/health answers 200 with `workers >= min_workers`; return its body."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            self._check_children_alive()
            try:
                with self._quiet_httpx():
                    response = self.health()
                last = f"{response.status_code} {response.text[:500]}"
                if response.status_code == 200 and response.json().get("workers", 0) >= min_workers:
                    return response.json()
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise StackError(
                    f"stack not healthy after {timeout:.0f}s (last: {last})\n{self.logs_report()}"
                )
            time.sleep(0.2)

    # -- logs --------------------------------------------------------------------------------------

    def logs_report(self, lines: int = TAIL_LINES) -> str:
        parts = []
        for child in self.children.values():
            state = "running" if child.alive() else f"exited {child.popen.returncode if child.popen else '-'}"
            parts.append(
                f"----- {child.name} (pid {child.pid}, {state}) {child.log_path} -----\n{child.tail(lines)}"
            )
        return "\n".join(parts)

    # -- internals ---------------------------------------------------------------------------------

    def _spawn_worker(
        self, name: str, extra_queues: tuple[str, ...], concurrency: int = 2, args: tuple[str, ...] = ()
    ) -> Child:
        self.worker_queues[name] = extra_queues
        base = () if name in self.exclusive_workers else self.base_queues
        queues = list(dict.fromkeys([*base, *extra_queues]))
        return self._spawn(
            f"worker-{name}",
            [
                "-m",
                "celery",
                "-A",
                "flowrunner",
                "worker",
                "--concurrency",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "-Q",
                ",".join(queues),
                "--without-mingle",
                "--without-gossip",
                "-l",
                "info",
                *args,
            ],
            env=self.worker_env.get(name),
        )

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Child:
        log_path = self.workdir / f"{name}.log"
        child = Child(name=name, argv=[sys.executable, *args], log_path=log_path)
        with log_path.open("ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')}: {' '.join(child.argv)}\n".encode())
            log.flush()
            child.popen = subprocess.Popen(
                child.argv,
                cwd=REPO_ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        child.started_at = time.monotonic()
        self.children[name] = child
        return child

    def _check_children_alive(self, only: Iterable[str] | None = None) -> None:
        # By default only the stack's own children: an extra worker a test stopped on purpose is not a failure.
        core = {"web", "beat", *(f"worker-{name}" for name in self.default_workers)}
        names = list(only) if only is not None else [name for name in self.children if name in core]
        dead = [n for n in names if n in self.children and not self.children[n].alive()]
        if dead:
            raise StackError(f"{', '.join(dead)} exited during startup\n{self.logs_report()}")


def _default_queues() -> tuple[str, ...]:
    """The queues a plain `celery worker` would consume: the app's declared queues, else the default one."""
    from flowrunner.celery import app

    declared = app.conf.task_queues
    if declared:
        names = [getattr(queue, "name", queue) for queue in declared]
        return tuple(str(name) for name in names)
    return (app.conf.task_default_queue or "celery",)


@atexit.register
def _kill_leftovers() -> None:
    for stack in list(_STACKS):
        stack.kill_all_now()


# -- accounts -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """A user of a fresh account, as a client of the live stack sees it."""

    username: str
    password: str
    account_id: str

    @property
    def auth(self) -> tuple[str, str]:
        """For `httpx` (`auth=creds.auth`)."""
        return (self.username, self.password)

    @property
    def authorization(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    @property
    def headers(self) -> dict[str, str]:
        """For the `websockets` client (`additional_headers=creds.headers`)."""
        return {"Authorization": self.authorization}


def _new_username(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def create_user_orm(username: str | None = None, password: str | None = None) -> Credentials:
    """An account + member user written through the ORM (autocommit: the test uses the `live_db` fixture).

    The password is hashed with PBKDF2 explicitly: tests/settings.py switches the test process to MD5,
    which the children (production hashers) would not accept.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher
    from django.db import transaction

    from accounts.models import Account, Membership

    username = username or _new_username("it")
    password = password or secrets.token_urlsafe(16)
    # The hasher class directly: make_password() only knows the hashers the (MD5-only) settings list.
    hasher = PBKDF2PasswordHasher()
    with transaction.atomic():
        account = Account.objects.create(name=username)
        user = get_user_model().objects.create(
            username=username, password=hasher.encode(password, hasher.salt())
        )
        Membership.objects.create(user=user, account=account)
    return Credentials(username=username, password=password, account_id=str(account.id))


def create_user_http(
    stack: LiveStack, username: str | None = None, password: str | None = None
) -> Credentials:
    """An account + user through `POST /api/v1/accounts` (signup is on in the stack)."""
    username = username or _new_username("it")
    password = password or secrets.token_urlsafe(16)
    response = httpx.post(
        f"{stack.api_url}/accounts", json={"username": username, "password": password}, timeout=30.0
    )
    if response.status_code != 201:
        raise AssertionError(f"POST /accounts answered {response.status_code}: {response.text[:500]}")
    return Credentials(username=username, password=password, account_id=str(response.json()["id"]))
