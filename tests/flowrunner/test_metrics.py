"""GET /metrics: bearer token or 401, 404 when switched off; request latency by route; the finish's metrics;
queue depth read from the broker at scrape time."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from django.test import Client
from prometheus_client import REGISTRY

from core import metrics
from core.authorization import bearer_matches
from flowrunner.metrics import QueueDepthCollector

TOKEN = "metrics-token-for-prometheus"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def token(settings):
    settings.FLOWRUNNER_METRICS = True
    settings.FLOWRUNNER_METRICS_TOKEN = TOKEN
    return TOKEN


def test_metrics_without_the_token_is_401(db, token):
    # Given metrics on with a token
    client = Client()
    # When scraped with no token, a wrong one, or another scheme
    answers = [
        client.get("/metrics"),
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token-at-all"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}"),
    ]
    # Then each is refused, saying what is needed, and shows no metric
    for response in answers:
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"flowrunner_" not in response.content


def test_metrics_without_a_configured_token_refuses_every_scrape(db, settings):
    settings.FLOWRUNNER_METRICS = True
    settings.FLOWRUNNER_METRICS_TOKEN = None
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 401


def test_metrics_with_the_token_serves_prometheus_text(db, token):
    # Given a request already served (its latency is recorded by route pattern, not by path)
    client = Client()
    client.get("/api/v1/health")
    # When scraped with the token
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    # Then every family is there, in Prometheus' text format
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for family in (
        "flowrunner_executions_started_total",
        "flowrunner_executions_finished_total",
        "flowrunner_node_run_duration_seconds",
        "flowrunner_reaper_actions_total",
        "flowrunner_websocket_connections",
        "flowrunner_websocket_subscriptions",
        "flowrunner_websocket_frames_sent_total",
        "flowrunner_http_request_duration_seconds",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
    assert (
        'flowrunner_http_request_duration_seconds_count{method="GET",route="api/v1/health",status="200"}'
        in text
    )


def test_metrics_switched_off_is_404(db, settings):
    settings.FLOWRUNNER_METRICS = False
    settings.FLOWRUNNER_METRICS_TOKEN = TOKEN
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404


def test_request_latency_labels_unknown_paths_and_methods_without_their_text(db, token):
    # Given requests to a path no route matches, with an invented method
    client = Client()
    before = sample(
        "flowrunner_http_request_duration_seconds_count", method="other", route="unmatched", status="404"
    )
    client.generic("BREW", f"/no-such-page/{uuid.uuid4()}")
    # Then they are counted under fixed labels: ids and methods never become label values
    after = sample(
        "flowrunner_http_request_duration_seconds_count", method="other", route="unmatched", status="404"
    )
    assert after == before + 1


@pytest.mark.parametrize(
    ("decision", "result", "outcome", "finished"),
    [
        (
            {"status": "succeeded", "end": {}},
            {"outcome": "done", "status": "completed"},
            "succeeded",
            "completed",
        ),
        ({"status": "failed"}, {"outcome": "done", "status": "failed"}, "failed", "failed"),
        ({"status": "succeeded"}, {"outcome": "done", "status": "running"}, "succeeded", None),
        ({"kind": "retry"}, {"outcome": "retry", "status": "running"}, "retried", None),
        ({"kind": "defer"}, {"outcome": "deferred", "status": "running"}, "deferred", None),
        ({"status": "succeeded"}, {"outcome": "ended", "status": "canceled"}, "discarded", None),
        (
            {"status": "succeeded"},
            {"outcome": "done", "status": "completed", "parent_id": 7},
            "succeeded",
            None,
        ),
    ],
)
def test_node_run_finished_counts_the_outcome_and_the_end_it_caused(decision, result, outcome, finished):
    # Given the totals before
    kind = f"kind-{uuid.uuid4().hex[:8]}"
    ended_before = {
        s: sample("flowrunner_executions_finished_total", status=s) for s in metrics.TERMINAL_STATUSES
    }
    # When a finish is recorded
    metrics.node_run_finished(kind=kind, decision=decision, result=result, started=time.monotonic() - 0.2)
    # Then its duration is observed under its outcome, and an execution is counted as ended only by the
    # finish that ended it (not a part's, not one refused because the execution was already over)
    assert sample("flowrunner_node_run_duration_seconds_count", kind=kind, outcome=outcome) == 1
    assert sample("flowrunner_node_run_duration_seconds_sum", kind=kind, outcome=outcome) >= 0.2
    for status in metrics.TERMINAL_STATUSES:
        expected = ended_before[status] + (1 if status == finished else 0)
        assert sample("flowrunner_executions_finished_total", status=status) == expected


def test_authorized_compares_the_whole_bearer_token():
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN)
    assert bearer_matches(f"bearer {TOKEN}", TOKEN)
    assert not bearer_matches(f"Bearer {TOKEN}x", TOKEN)
    assert not bearer_matches(f"Bearer {TOKEN[:-1]}", TOKEN)
    assert not bearer_matches("Bearer ", "")
    assert not bearer_matches(None, TOKEN)


def test_queue_depth_reads_every_bound_queue_of_the_broker(settings):
    # Given a Redis broker holding 3 messages in one queue (one of them at a priority) and kombu's binding
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("needs a Redis broker")
    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    keys = [queue, f"{queue}\x06\x166", f"_kombu.binding.{queue}"]
    try:
        client.rpush(queue, b"{}", b"{}")
        client.rpush(f"{queue}\x06\x166", b"{}")
        client.sadd(f"_kombu.binding.{queue}", f"{queue}\x06\x16\x06\x16{queue}")
        # When the collector is read
        families = list(QueueDepthCollector(url).collect())
    finally:
        client.delete(*keys)
        client.close()
    # Then the queue's depth counts every priority list, and the default queue is always reported
    depths = {s.labels["queue"]: s.value for family in families for s in family.samples}
    assert depths[queue] == 3
    assert "celery" in depths


def test_queue_depth_with_the_broker_down_answers_without_the_gauge():
    families = list(QueueDepthCollector("redis://127.0.0.1:1/0").collect())
    assert families == []


def test_grafana_dashboard_queries_only_metrics_that_exist(db, token):
    # Given the metric names the web process serves (the scrape-time gauges included)
    import json
    import re
    from pathlib import Path

    served = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    names = {
        re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (flowrunner_\S+)", served, re.MULTILINE)
    } | {"flowrunner_queue_depth"}
    # When the dashboard's queries are read
    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    queried = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"flowrunner_\w+", target["expr"])
    }
    # Then every metric it queries is one FlowRunner serves, and every family has a panel
    assert queried <= names, queried - names
    assert names - {"flowrunner_queue_depth"} <= queried | {"flowrunner_queue_depth"}
