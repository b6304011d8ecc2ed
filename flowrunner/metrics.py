"""The web process's /metrics (Prometheus text, bearer token), its request-latency middleware, and the gauges
read at scrape time: broker queue depth and this process's WebSocket connections."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import redis
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from core import metrics
from core.authorization import bearer_matches
from executions.consumers import live_consumers

logger = logging.getLogger(__name__)

# Celery's own exchanges on a Redis broker: event and control fan-outs, not task queues.
_NOT_TASK_EXCHANGES = {"celeryev", "celery.pidbox", "reply.celery.pidbox"}
_BINDING_PREFIX = "_kombu.binding."
# Kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>".
_PRIORITY_STEPS = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def process_registry() -> Any:
    """This process's metrics, or, with PROMETHEUS_MULTIPROC_DIR, those of every process sharing the dir."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


class QueueDepthCollector:
    """Messages waiting in each task queue of a Redis broker, read when scraped (LLEN per list, one pipeline).

    Queues are found from kombu's bindings, so a `queue:` a flow declared shows up once a task was sent to it.
    """

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url

    def _queues(self, client: Any) -> set[str]:
        queues: set[str] = set()
        for key in client.scan_iter(match=f"{_BINDING_PREFIX}*", count=1000):
            if key.decode()[len(_BINDING_PREFIX) :] in _NOT_TASK_EXCHANGES:
                continue
            for member in client.smembers(key):
                queues.add(member.decode().rsplit("\x06\x16", 1)[-1])
        return queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "flowrunner_queue_depth", "Task messages waiting in a Celery queue (not yet taken by a worker).",
            labels=["queue"],
        )  # fmt: skip
        client = redis.Redis.from_url(self.broker_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            queues = sorted(self._queues(client) | {"celery"})
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                for step in _PRIORITY_STEPS:
                    pipe.llen(queue + step)
            lengths = pipe.execute()
        except Exception as exc:  # a scrape must answer even with the broker down; the gauge is then absent
            logger.warning("metrics: could not read the broker's queues: %s", exc)
            return
        finally:
            client.close()
        width = len(_PRIORITY_STEPS)
        for index, queue in enumerate(queues):
            family.add_metric([queue], sum(lengths[index * width : (index + 1) * width]))
        yield family


class WebSocketCollector:
    """This process's open WebSocket connections and their subscriptions, counted when scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        consumers = list(live_consumers())
        yield GaugeMetricFamily(
            "flowrunner_websocket_connections", "Open WebSocket connections in this web process.",
            value=len(consumers),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "flowrunner_websocket_subscriptions",
            "Subscriptions of this process's WebSocket connections (executions, plus the account stream).",
            value=sum(len(c.subscriptions) + int(c.account_subscribed) for c in consumers),
        )


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WebSocketCollector())
    if str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://", "unix://")):
        registry.register(QueueDepthCollector(settings.CELERY_BROKER_URL))
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: 404 when metrics are off, 401 without `Authorization: Bearer $FLOWRUNNER_METRICS_TOKEN`."""
    if not settings.FLOWRUNNER_METRICS:
        return HttpResponse(b"metrics are switched off (FLOWRUNNER_METRICS=false)\n", status=404)
    if not bearer_matches(request.headers.get("Authorization"), settings.FLOWRUNNER_METRICS_TOKEN):
        response = HttpResponse(
            b"a bearer token is required: Authorization: Bearer $FLOWRUNNER_METRICS_TOKEN\n", status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = generate_latest(process_registry()) + generate_latest(scrape_registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _observe(request: HttpRequest, response: HttpResponse, started: float) -> None:
    match = getattr(request, "resolver_match", None)
    method = request.method if request.method in _METHODS else "other"
    metrics.request_finished(
        method=method or "other", route=getattr(match, "route", None) or "unmatched",
        status=response.status_code, seconds=time.perf_counter() - started,
    )  # fmt: skip


@sync_and_async_middleware
def request_latency_middleware(get_response: Any) -> Any:
    """Times every HTTP request, labelled by the matched route's pattern (ids never become labels) and by
    method and status; sync or async as the chain below it is, so it adds no thread hop."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            started = time.perf_counter()
            response = await get_response(request)
            _observe(request, response, started)
            return response

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            started = time.perf_counter()
            response = get_response(request)
            _observe(request, response, started)
            return response

    return middleware
