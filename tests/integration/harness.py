"""Real-process harness for integration tests: daphne, Celery workers and beat as a `LiveStack`.

The children (tests/integration/processes.py) run the project's own entry points (`python -m daphne`,
`python -m celery`) against the test process's PostgreSQL *test* database (`test_<name>`, created by
pytest-django) and the test process's Redis db, with the test process's SECRET_KEY and encryption key, so what a
test writes through the ORM (committed, through the `live_db` fixture, in autocommit) or encrypts, the children
read, and tasks the test process enqueues reach the children's workers. Its users: tests/integration/clients.py.

Teardown is guaranteed three ways: the fixture's finalizer (`stop_all`), an `atexit` hook, and the children's
death signal (they die with pytest).

All stacks of a session share the test database, and each one's beat drives the reaper and the admission sweep
over the whole of it: a stack that injects faults (`exclusive`) pauses the other stacks' beats while it runs, or
their reapers would recover its lost runs (onto their own brokers) before its own reaper does.
"""

from __future__ import annotations

import atexit
import contextlib
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

from tests.integration.clients import Credentials, create_user_http, create_user_orm
from tests.integration.housekeeping import Housekeeping
from tests.integration.processes import (
    DEFAULT_STACK_ENV,
    REPO_ROOT,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    TAIL_LINES,
    Child,
    StackError,
    _die_with_parent,
    children_environment,
    default_queues,
    free_port,
    quiet_httpx,
)

# Re-exported: bench/ and older imports name them here.
__all__ = [
    "DEFAULT_STACK_ENV",
    "REPO_ROOT",
    "STARTUP_TIMEOUT",
    "Child",
    "Credentials",
    "LiveStack",
    "StackError",
    "create_user_http",
    "create_user_orm",
    "free_port",
]

# Every stack ever started in this interpreter: the atexit hook kills whatever is still alive.
_STACKS: weakref.WeakSet[LiveStack] = weakref.WeakSet()
# Stacks started and not stopped yet, oldest first: the ones an exclusive stack pauses.
_RUNNING: list[LiveStack] = []


@dataclass(eq=False)
class LiveStack(Housekeeping):
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
    # Injects faults: while it runs, no other stack's reaper or admission sweep may touch the shared database.
    exclusive: bool = False
    paused_beats: list[str] = field(default_factory=list)

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
        env = children_environment()
        env.update(extra_env or {})
        return cls(
            workdir=workdir,
            env=env,
            default_workers=tuple(f"w{i}" for i in range(1, workers + 1)),
            beat=beat,
            base_queues=default_queues(),
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
        _RUNNING.append(self)
        try:
            if self.exclusive:
                for other in _RUNNING[:-1]:
                    other.pause_housekeeping()
            self._spawn("web", self.web_argv())
            for name in self.default_workers:
                self._spawn_worker(name, ())
            if self.beat and any(other.exclusive for other in _RUNNING if other is not self):
                self.paused_beats.append("beat")  # started once the exclusive stack stops
            elif self.beat:
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
        if self in _RUNNING:
            _RUNNING.remove(self)
            if self.exclusive and not any(other.exclusive for other in _RUNNING):
                for other in _RUNNING:
                    other.resume_housekeeping()

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
        with quiet_httpx():
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

    def wait_healthy(self, min_workers: int = 1, timeout: float = STARTUP_TIMEOUT) -> dict:
        """Wait until GET /api/v1/health answers 200 with `workers >= min_workers`; return its body."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            self._check_children_alive()
            try:
                with quiet_httpx():
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


@atexit.register
def _kill_leftovers() -> None:
    for stack in list(_STACKS):
        stack.kill_all_now()
