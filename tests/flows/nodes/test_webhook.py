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


def test_webhook_connection_refused_is_retryable(ctx_for, loopback_allowed):
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


def test_webhook_refuses_the_metadata_address(ctx_for, loopback_allowed):
    # given a webhook to the cloud metadata service / when run / then refused permanently, saying why
    with pytest.raises(PermanentNodeError) as caught:
        WebhookKind().run(ctx_for("webhook", {"url": "http://169.254.169.254/hook"}))
    assert caught.value.message == (
        "webhook POST http://169.254.169.254/hook: address 169.254.169.254 is not allowed: "
        "the cloud metadata service, which is always refused"
    )


def test_webhook_refuses_loopback_when_private_networks_are_not_allowed(ctx_for, http_server, settings):
    # given a shared server's policy and a local receiver / when run / then refused and nothing was sent
    base, requests = http_server
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    with pytest.raises(PermanentNodeError, match=r"address 127\.0\.0\.1 is not allowed: a loopback address"):
        WebhookKind().run(ctx_for("webhook", {"url": f"{base}/hook"}))
    assert requests == []


def test_webhook_answer_over_the_limit_fails_naming_it(ctx_for, http_server, settings):
    # given a receiver answering 1 MiB and a 64 KiB limit / when run / then the node fails naming the limit
    base, _ = http_server
    settings.FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES = 65536
    with pytest.raises(PermanentNodeError, match=r"over the limit of 65536 bytes"):
        WebhookKind().run(ctx_for("webhook", {"url": f"{base}/big/1048576", "method": "GET"}))
