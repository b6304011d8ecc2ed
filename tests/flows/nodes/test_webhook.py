"""The webhook kind against a real local HTTP server: what it sends, its output, and its failures."""

import json
import socket

import pytest

from flows.nodes.base import NodeError, NodeTimeoutError, PermanentNodeError
from flows.nodes.webhook import WebhookKind


def test_webhook_posts_the_document_by_default(ctx_for, http_server):
    # given a webhook without body and a document
    base, requests = http_server
    ctx = ctx_for("webhook", {"url": f"{base}/hook", "headers": {"X-Flow": "f"}}, {"order": 7, "items": [1]})
    # when run
    result = WebhookKind().run(ctx)
    # then the whole document was POSTed as JSON and the output is the status
    sent = requests[-1]
    assert sent["method"] == "POST" and json.loads(sent["body"]) == {"order": 7, "items": [1]}
    assert sent["headers"]["Content-Type"] == "application/json" and sent["headers"]["X-Flow"] == "f"
    assert (result.output, result.action) == ({"status_code": 200, "success": True}, "success")


def test_webhook_sends_a_chosen_rendered_body_and_method(ctx_for, http_server):
    # given a body built from the document and the PUT method
    base, requests = http_server
    ctx = ctx_for(
        "webhook", {"url": f"{base}/hook", "method": "put", "body": {"id": "${input.order}"}}, {"order": 7}
    )
    # when run / then only that body went out with that method
    WebhookKind().run(ctx)
    assert requests[-1]["method"] == "PUT" and json.loads(requests[-1]["body"]) == {"id": 7}


@pytest.mark.parametrize("status", [404, 500])
def test_webhook_non_2xx_is_a_retryable_error(ctx_for, http_server, status):
    # given a receiver answering with an error / when run / then a retryable NodeError with the status
    base, _ = http_server
    with pytest.raises(NodeError, match=f"answered {status}") as caught:
        WebhookKind().run(ctx_for("webhook", {"url": f"{base}/status/{status}"}))
    assert caught.value.retryable


def test_webhook_timeout_is_a_node_timeout(ctx_for, http_server):
    # given a receiver slower than the node's timeout / when run / then NodeTimeoutError
    base, _ = http_server
    with pytest.raises(NodeTimeoutError):
        WebhookKind().run(ctx_for("webhook", {"url": f"{base}/slow/2"}, timeout=0.2))


def test_webhook_connection_refused_is_retryable(ctx_for):
    # given nobody listening / when run / then a retryable NodeError
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NodeError) as caught:
        WebhookKind().run(ctx_for("webhook", {"url": f"http://127.0.0.1:{port}/"}))
    assert caught.value.retryable


def test_webhook_bad_rendered_url_fails_permanently(ctx_for):
    # given a URL that renders to something unusable / when run / then a permanent error
    with pytest.raises(PermanentNodeError):
        WebhookKind().run(ctx_for("webhook", {"url": "${input.u}"}, {"u": "mailto:x@y"}))


def test_webhook_validate_accepts_full_params(param_problems):
    # given every param / when validated / then no problem
    params = {
        "url": "https://h.example.com",
        "method": "PATCH",
        "headers": {"A": "b"},
        "body": [1],
        "timeout": 2,
    }
    assert param_problems("webhook", params) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("url", "missing required parameter 'url'")]),
        (
            {"url": "/relative"},
            [("url", "'url' must be an absolute http:// or https:// URL, got '/relative'")],
        ),
        (
            {"url": "http://x", "method": "SEND"},
            [("method", "'method' must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, got 'SEND'")],
        ),
        (
            {"url": "http://x", "headers": {"A": [1]}},
            [("headers.A", "'headers.A' must be text or a number, got a list")],
        ),
        (
            {"url": "http://x", "secret": "s"},
            [("secret", "unknown parameter 'secret' (expected one of: body, headers, method, url)")],
        ),
    ],
)
def test_webhook_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each problem has its path and message
    assert param_problems("webhook", params) == expected
