"""The benchmark's processes and database: a fresh PostgreSQL database, daphne, the bench Celery workers."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from bench.config import Config
from tests.integration.harness import Child, LiveStack

MAIN_WORKER = "bench"
COUNT_WORKER = "count"
COUNT_QUEUE = "bench_count"
QUEUE = "celery"

# Production values of everything FlowRunner reads, except the log level (less log I/O on both sides).
STACK_ENV = {
    "FLOWRUNNER_REAPER_INTERVAL": "10s",
    "FLOWRUNNER_STALE_AFTER": "30s",
    "FLOWRUNNER_MAX_STEPS": "1000",
    "FLOWRUNNER_LOG_LEVEL": "WARNING",
}


def configure_environment(cfg: Config) -> None:
    """Point this process's Django settings (read once, at setup) at the benchmark database and Redis db."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "flowrunner.settings",
            "FLOWRUNNER_ENV_FILE": os.devnull,
            "FLOWRUNNER_POSTGRES_HOST": cfg.pg_host,
            "FLOWRUNNER_POSTGRES_PORT": str(cfg.pg_port),
            "FLOWRUNNER_POSTGRES_USER": cfg.pg_user,
            "FLOWRUNNER_POSTGRES_PASSWORD": cfg.pg_password,
            "FLOWRUNNER_POSTGRES_DATABASE": cfg.database,
            "FLOWRUNNER_REDIS_URL": cfg.redis_url,
            "FLOWRUNNER_LOG_LEVEL": "WARNING",
            # A pool big enough for the driver's threads (WebSocket checks, polling) and the run submissions.
            "FLOWRUNNER_POSTGRES_POOL_SIZE": "20",
        }
    )


def recreate_database(cfg: Config) -> None:
    """DROP (forcing other sessions out) and CREATE the benchmark database, then migrate it."""
    import psycopg
    from django.core.management import call_command
    from psycopg import sql

    with psycopg.connect(
        host=cfg.pg_host, port=cfg.pg_port, user=cfg.pg_user, password=cfg.pg_password or None,
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        name = sql.Identifier(cfg.database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    call_command("migrate", interactive=False, verbosity=0)


def server_versions() -> dict[str, str]:
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        redis_version = client.info("server").get("redis_version", "?")
    finally:
        client.close()
    return {"postgresql": postgres, "redis": str(redis_version)}


class BenchStack(LiveStack):
    """The integration harness's LiveStack, with workers started from `bench.worker_app` (FlowRunner's app
    plus the baseline tasks), a fixed prefork concurrency, and no beat."""

    concurrency: int = 2

    @classmethod
    def for_benchmark(cls, workdir: Path, concurrency: int) -> BenchStack:
        stack = cls.from_django_settings(workdir, workers=0, beat=False, extra_env=STACK_ENV)
        stack.default_workers = ()
        stack.concurrency = concurrency
        return stack

    @property
    def gc_log(self) -> Path:
        """Where the web process records its garbage collector's pauses (bench.web)."""
        return self.workdir / "gc-web.log"

    def web_argv(self) -> list[str]:
        self.env["FLOWRUNNER_BENCH_GC_LOG"] = str(self.gc_log)
        return ["-m", "bench.web", "-b", self.host, "-p", str(self.port), "flowrunner.asgi:application"]

    def gc_pauses(self, since: float, until: float) -> dict[str, Any]:
        """The web process's collections of `GC_LOG_FROM_MS` or more between two `time.time()`s."""
        pauses: list[tuple[int, float]] = []
        if self.gc_log.exists():
            for line in self.gc_log.read_text().splitlines():
                at, generation, ms, _collected = line.split()
                if since <= float(at) <= until:
                    pauses.append((int(generation), float(ms)))
        return {
            "count": len(pauses),
            "max_ms": max((ms for _, ms in pauses), default=0.0),
            "total_ms": round(sum(ms for _, ms in pauses), 1),
            "full_collections": sum(1 for generation, _ in pauses if generation == 2),
        }

    def worker_argv(self, name: str, queues: tuple[str, ...], concurrency: int) -> list[str]:
        return [
            "-m", "celery", "-A", "bench.worker_app", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency),
            "-n", f"{name}@%h", "-Q", ",".join(queues),
            "--without-mingle", "--without-gossip", "-l", "warning",
        ]  # fmt: skip

    def start_bench_worker(
        self,
        name: str = MAIN_WORKER,
        queues: tuple[str, ...] = (QUEUE,),
        concurrency: int | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        saved = self.env
        self.env = {**saved, **(env or {})}
        try:
            child = self._spawn(
                f"worker-{name}", self.worker_argv(name, queues, concurrency or self.concurrency)
            )
        finally:
            self.env = saved
        self.wait_for_workers([name])
        return child

    def worker_command(self) -> str:
        return "celery " + " ".join(self.worker_argv(MAIN_WORKER, (QUEUE,), self.concurrency)[2:])

    # -- pausing consumption: a backlog is queued first, then the worker drains it -----------------------

    def _control(self, command: str, name: str, queue: str) -> None:
        from flowrunner.celery import app

        destination = [f"{name}@{socket.gethostname()}"]
        method = getattr(app.control, command)
        replies = method(queue, destination=destination, reply=True, timeout=5.0) or []
        if not replies:
            raise RuntimeError(f"worker {name} did not answer {command}({queue})")

    def pause(self, name: str = MAIN_WORKER, queue: str = QUEUE) -> None:
        self._control("cancel_consumer", name, queue)

    def resume(self, name: str = MAIN_WORKER, queue: str = QUEUE) -> None:
        self._control("add_consumer", name, queue)

    def worker_pids(self, name: str = MAIN_WORKER) -> tuple[int, list[int]]:
        """The worker's main pid and its pool processes' pids."""
        main = self.children[f"worker-{name}"].pid
        children = Path(f"/proc/{main}/task/{main}/children")
        pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        return main, pids


def wait_until(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(interval)


def floors(samples: int = 200) -> dict[str, float]:
    """Round trips of the servers themselves, now (machine noise shows here first): median ms of a
    PostgreSQL `SELECT 1`, of a one-row INSERT + COMMIT, and of a Redis PING."""
    import statistics

    import psycopg
    import redis
    from django.conf import settings

    db = settings.DATABASES["default"]

    def timed(call: Any) -> float:
        values = []
        for _ in range(samples):
            started = time.perf_counter()
            call()
            values.append((time.perf_counter() - started) * 1000)
        return round(statistics.median(values), 3)

    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None, dbname=db["NAME"]
    ) as conn:
        conn.execute("CREATE TEMP TABLE bench_floor (id serial PRIMARY KEY, v int)")
        conn.commit()

        def insert_commit() -> None:
            conn.execute("INSERT INTO bench_floor (v) VALUES (1)")
            conn.commit()

        conn.autocommit = True
        select = timed(lambda: conn.execute("SELECT 1").fetchone())
        conn.autocommit = False
        commit = timed(insert_commit)
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        ping = timed(client.ping)
    finally:
        client.close()
    return {"pg_select1_ms": select, "pg_insert_commit_ms": commit, "redis_ping_ms": ping}
