"""Embedded mode: PostgreSQL from a wheel, an in-process Celery worker, the reaper loop and daphne (no Redis)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import django
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from flowrunner import pgserver
from flowrunner.cli.demo import demo_setup, print_demo

logger = logging.getLogger(__name__)

# Variables that would point a process at PostgreSQL or Redis; `flowrunner run` blanks them (an empty value
# wins over `.env`, since python-dotenv never overrides a variable that is already set).
SERVER_VARIABLES = ("FLOWRUNNER_POSTGRES_HOST", "FLOWRUNNER_REDIS_URL")
WORKER_CONCURRENCY = 4
TIMER_PRECISION = 0.02


def use_embedded_environment(*, postgres_dir: Path, keys_file: Path, log_level: str | None = None) -> None:
    """Point the settings at an embedded PostgreSQL on `postgres_dir` + the in-process broker. Must run before
    Django settings are loaded: settings read the environment once, at import."""
    if "flowrunner.settings" in sys.modules:
        raise RuntimeError("use_embedded_environment() must run before the Django settings are imported")
    for name in SERVER_VARIABLES:
        os.environ[name] = ""
    os.environ["FLOWRUNNER_EMBEDDED_POSTGRES_DIR"] = str(postgres_dir)
    os.environ["FLOWRUNNER_DEV_KEYS_FILE"] = str(keys_file)
    if log_level:
        os.environ["FLOWRUNNER_LOG_LEVEL"] = log_level
    os.environ["DJANGO_SETTINGS_MODULE"] = "flowrunner.settings"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowrunner.settings")
    django.setup()


def is_embedded() -> bool:
    """True when no Redis is configured: the broker and the channel layer only exist inside this process."""
    return bool(settings.EMBEDDED)


def embedded_postgres_dir() -> Path | None:
    """The embedded server's data directory, or None when a PostgreSQL host is configured."""
    return settings.EMBEDDED_POSTGRES_DIR


def database(*, attach: bool = True, throwaway: bool = False):  # noqa: ANN201
    """A context in which the configured database answers: with no PostgreSQL host, the embedded server,
    started here (and stopped, after closing this process's connections, when the block ends) or, with
    `attach`, the one a live `flowrunner serve` already runs on the same directory."""
    directory = embedded_postgres_dir()
    if directory is None:
        return nullcontext()
    return _embedded_database(directory, attach=attach, throwaway=throwaway)


@contextmanager
def _embedded_database(directory: Path, *, attach: bool, throwaway: bool) -> Iterator[object]:
    with pgserver.running(directory, attach=attach, throwaway=throwaway) as server:
        try:
            yield server
        finally:
            close_database_connections()


def close_database_connections() -> None:
    """Close every pooled connection of this process (before its server goes away under them)."""
    for connection in connections.all(initialized_only=True):
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


def terminate_as_interrupt() -> None:
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks stop the embedded server and remove temp files."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def migrate(*, verbosity: int = 0) -> None:
    call_command("migrate", interactive=False, verbosity=verbosity)


class Reaper(threading.Thread):
    """What `celery beat` does in a deployment: fire the due schedules every second, and run the stuck-run
    reaper (and the admission sweep) every FLOWRUNNER_REAPER_INTERVAL."""

    SCHEDULE_TICK = 1.0

    def __init__(self, interval: float) -> None:
        super().__init__(name="flowrunner-reaper", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
        from django.db import close_old_connections, connection

        from executions.admission import admit_all
        from triggers.schedules import schedules_fire_due
        from workers.reaper import reap

        next_reap = time.monotonic() + self.interval
        while not self.stopped.wait(min(self.SCHEDULE_TICK, self.interval)):
            try:
                close_old_connections()
                schedules_fire_due()
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self.interval
                    reap()
                    admit_all()
            except Exception:  # one failed pass must not end the loop: the next one retries everything
                logger.warning("reaper pass failed", exc_info=True)
                connection.close()
        connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


@contextmanager
def in_process_worker(
    *,
    concurrency: int = WORKER_CONCURRENCY,
    reaper: bool = True,
    loglevel: str = "error",
    stop_wait: float = 30.0,
    warm_stop: bool = True,
) -> Iterator[object]:
    """A real Celery worker on a thread pool in this process: countdown retries and chords behave as with a
    separate worker (no eager mode), over whatever broker the settings name (`memory://` when embedded).

    This is `celery.contrib.testing.worker.start_worker` minus its unbounded shutdown: the worker's loop only
    notices a stop request between 2-second broker polls, and `flowrunner run` should not pay that after the
    execution has ended. The thread is a daemon, so whatever is left of it ends with the process.
    """
    # Only the in-process worker (embedded mode, `flowrunner run`) loads Celery's worker machinery.
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from celery.worker import state as worker_state

    # Tasks are looked up by name when a message arrives: register them before the first one does.
    import workers.tasks  # noqa: F401
    from flowrunner.celery import app

    # `memory://` has no host name, and kombu warns about that on every connection.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
    setup_app_for_worker(app, loglevel, None)
    controller = TestWorkController(
        app=app,
        hostname=f"embedded-{os.getpid()}@{socket.gethostname()}",
        concurrency=concurrency,
        pool="threads",
        loglevel=loglevel,
        logfile=None,
        ready_callback=None,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        # Countdowns (retries, wait nodes, chord polling) fire within 20 ms instead of within Celery's
        # default 1 s timer precision.
        timer_precision=TIMER_PRECISION,
    )
    thread = threading.Thread(target=controller.start, name="flowrunner-worker", daemon=True)
    thread.start()
    controller.ensure_started()
    loop = Reaper(settings.FLOWRUNNER_REAPER_INTERVAL) if reaper else None
    if loop is not None:
        loop.start()
    try:
        yield controller
    finally:
        if loop is not None:
            loop.stop()
        # Warm: running tasks finish first. Cold: nothing more is started or waited for.
        if warm_stop:
            worker_state.should_stop = 0
        else:
            worker_state.should_terminate = 0
        thread.join(stop_wait)


def use_embedded_channel_layer() -> None:
    """Swap Channels' in-memory layer for the thread-safe one (core/layers.py) before it is first used:
    the in-process worker broadcasts from its own threads."""
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if layer.get("BACKEND") == "channels.layers.InMemoryChannelLayer":
        settings.CHANNEL_LAYERS = {
            **settings.CHANNEL_LAYERS,
            "default": {**layer, "BACKEND": "core.layers.EmbeddedChannelLayer"},
        }


def asgi_application():  # noqa: ANN201
    """flowrunner.asgi's application, with static files (admin, dashboard) served like `runserver` does."""
    # flowrunner.asgi sets Django up on import: only once the environment chose the settings.
    from channels.routing import ProtocolTypeRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from executions.routing import websocket_application
    from flowrunner.asgi import django_asgi_app

    return ProtocolTypeRouter(
        {"http": ASGIStaticFilesHandler(django_asgi_app), "websocket": websocket_application}
    )


def run_daphne(host: str, port: int) -> None:
    """Serve HTTP + WebSocket in the main thread until SIGINT/SIGTERM."""
    # After serve() has installed Twisted's asyncio reactor (daphne.server's import does it).
    from daphne.access import AccessLogGenerator
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    from flowrunner import daphne_housekeeping

    daphne_housekeeping.install()
    Server(
        application=asgi_application(),
        endpoints=build_endpoint_description_strings(host=host, port=port),
        action_logger=AccessLogGenerator(sys.stdout),
    ).run()


def serve(
    *,
    host: str,
    port: int,
    worker: bool | None = None,
    demo: bool = False,
    migrate_first: bool | None = None,
    concurrency: int = WORKER_CONCURRENCY,
) -> None:
    """`flowrunner serve`: daphne, plus (embedded, or when asked) an in-process worker and the reaper loop.

    With no PostgreSQL host the embedded server runs for as long as this process: started first, stopped
    last (after daphne and the worker), also on SIGTERM. `worker=None` means: start one exactly when no Redis
    is configured, since nothing outside this process can reach an in-memory broker. `migrate_first=None`
    means: migrate the embedded database (this process owns it); deployments migrate as their own step.
    """
    # Twisted's reactor must be the asyncio one, installed before anything else imports Twisted.
    import daphne.server  # noqa: F401

    terminate_as_interrupt()
    setup_django()
    embedded = is_embedded()
    if embedded:
        use_embedded_channel_layer()
    postgres_dir = embedded_postgres_dir()
    # A second server on the same directory would have its database stopped under it when the first exits.
    with database(attach=False):
        if migrate_first or (migrate_first is None and postgres_dir is not None):
            migrate()
        if demo:
            print_demo(demo_setup(), base_url=f"http://{_display_host(host)}:{port}")
        start_worker = embedded if worker is None else worker
        if embedded and not start_worker:
            print(
                "warning: no FLOWRUNNER_REDIS_URL and --no-worker: executions will stay queued (an in-memory "
                "broker is only reachable from this process, so `flowrunner worker` cannot take them); serve "
                "without --no-worker, or set FLOWRUNNER_REDIS_URL and start `flowrunner worker` and `beat`",
                file=sys.stderr,
            )
        _banner(host, port, embedded=embedded, worker=start_worker, concurrency=concurrency)
        if not start_worker:
            run_daphne(host, port)
            return
        with in_process_worker(concurrency=concurrency, reaper=embedded):
            run_daphne(host, port)


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _banner(host: str, port: int, *, embedded: bool, worker: bool, concurrency: int) -> None:
    database = settings.DATABASES["default"]
    postgres_dir = embedded_postgres_dir()
    where = (
        f"embedded PostgreSQL in {postgres_dir}, database {database['NAME']} (socket in {database['HOST']})"
        if postgres_dir is not None
        else f"PostgreSQL {database['HOST']}:{database['PORT']}, database {database['NAME']} as {database['USER']}"
    )
    broker = "in-process (memory://)" if embedded else "Redis"
    if worker:
        workers = f"in-process worker ({concurrency} threads)" + (" + reaper" if embedded else "")
    elif embedded:
        # `flowrunner worker` refuses without Redis: nothing outside this process reaches its broker.
        workers = (
            "none: executions stay queued (without Redis only this process can run them; drop --no-worker)"
        )
    else:
        workers = "none in-process (start `flowrunner worker` and `flowrunner beat`)"
    base = f"http://{_display_host(host)}:{port}"
    print(
        f"FlowRunner on {base}  (API {base}/api/v1, docs {base}/api/docs, WebSocket ws://"
        f"{_display_host(host)}:{port}/api/v1/ws)\n"
        f"  database: {where}\n  broker:   {broker}\n  workers:  {workers}\n"
        "  stop with Ctrl-C",
        flush=True,
    )
