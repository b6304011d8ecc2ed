"""A worker's own /metrics: `--metrics-port N` serves, from the worker's main process, the metrics that all its
pool processes write to PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from celery import bootsteps
from click import Option
from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from core.authorization import bearer_matches

logger = logging.getLogger(__name__)

PORT_OPTION = Option(
    ["--metrics-port"],
    type=int,
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (FLOWRUNNER_METRICS_TOKEN as a bearer token).",
)
HOST_OPTION = Option(
    ["--metrics-host"],
    default="0.0.0.0",
    show_default=True,
    help="Address the --metrics-port server listens on.",
)


class MetricsConfigError(RuntimeError):
    """--metrics-port cannot be honoured (metrics off, no multiprocess directory)."""


def multiproc_dir_problem(settings: Any) -> str | None:
    if not settings.FLOWRUNNER_METRICS:
        return "--metrics-port needs metrics on: FLOWRUNNER_METRICS is false"
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return (
            "--metrics-port needs PROMETHEUS_MULTIPROC_DIR (an empty directory its pool processes share): "
            "`flowrunner worker --metrics-port N` sets one up"
        )
    if not os.path.isdir(directory):
        return f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not a directory"
    return None


def _handler(token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, b"not found; try /metrics\n")
            elif not bearer_matches(self.headers.get("Authorization"), token):
                self._answer(
                    401, b"a bearer token is required: Authorization: Bearer $FLOWRUNNER_METRICS_TOKEN\n"
                )
            else:
                registry = CollectorRegistry()
                MultiProcessCollector(registry)
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # a scrape every 15 s is not worth a log line

    return Handler


def serve(host: str, port: int, token: str | None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(token))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="flowrunner-metrics", daemon=True).start()
    return server


class MetricsServer(bootsteps.StartStopStep):
    """Starts with the worker's main process when --metrics-port is given; pool processes only write."""

    def __init__(self, parent: Any, metrics_port: int | None = None, metrics_host: str = "0.0.0.0", **_: Any):
        self.port = metrics_port
        self.host = metrics_host
        self.server: ThreadingHTTPServer | None = None
        super().__init__(parent)

    def start(self, parent: Any) -> None:
        if self.port is None:
            return
        problem = multiproc_dir_problem(settings)
        if problem is not None:
            raise MetricsConfigError(problem)
        self.server = serve(self.host, self.port, settings.FLOWRUNNER_METRICS_TOKEN)
        logger.info("metrics on http://%s:%s/metrics", self.host, self.server.server_address[1])

    def stop(self, parent: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def install(app: Any) -> None:
    app.user_options["worker"].add(PORT_OPTION)
    app.user_options["worker"].add(HOST_OPTION)
    app.steps["worker"].add(MetricsServer)
