"""The http.request kind against a real local HTTP server: request, output, actions, timeouts, errors."""

import base64
import socket

import pytest

from flows.nodes.base import NodeError, NodeTimeoutError, PermanentNodeError
from flows.nodes.http_request import HttpRequestKind


def run(ctx):
    return HttpRequestKind().run(ctx)


def test_http_request_get_returns_status_headers_and_json_body(ctx_for, http_server):
    # given a GET with query parameters
    base, _ = http_server
    ctx = ctx_for(
        "http.request", {"url": f"{base}/echo", "query": {"q": "x", "tags": ["a", "b"], "on": True}}
    )
    # when run
    result = run(ctx)
    # then the output has the status, the headers and the decoded JSON body, and the action is success
    assert result.action == "success"
    assert result.output["status_code"] == 200 and result.output["success"] is True
    assert result.output["headers"]["content-type"] == "application/json"
    assert result.output["body"]["method"] == "GET"
    assert result.output["body"]["query"] == {"q": ["x"], "tags": ["a", "b"], "on": ["true"]}


def test_http_request_sends_a_mapping_body_as_json(ctx_for, http_server):
    # given a POST with a mapping body and a custom header
    base, requests = http_server
    params = {"url": f"{base}/echo", "method": "post", "body": {"a": [1, 2]}, "headers": {"X-Num": 3}}
    # when run
    run(ctx_for("http.request", params))
    # then the server got JSON with the JSON content type and the header as text
    sent = requests[-1]
    assert sent["method"] == "POST" and sent["body"] == '{"a":[1,2]}'
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["X-Num"] == "3"


def test_http_request_sends_a_string_body_raw(ctx_for, http_server):
    # given a string body with its own content type / when run / then it goes out as is
    base, requests = http_server
    run(
        ctx_for(
            "http.request",
            {
                "url": f"{base}/echo",
                "method": "PUT",
                "body": "a=1&b=2",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
        )
    )
    assert requests[-1]["body"] == "a=1&b=2"
    assert requests[-1]["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_http_request_renders_expressions_in_params(ctx_for, http_server):
    # given a URL and a bearer token taken from the document and the secrets
    base, requests = http_server
    params = {
        "url": "${input.base}/echo/${input.id}",
        "auth": {"type": "bearer", "token": "${secrets.TOKEN}"},
    }
    ctx = ctx_for("http.request", params, {"base": base, "id": 7}, secrets={"TOKEN": "s3cr3t"})
    # when run / then the rendered values were used
    run(ctx)
    assert requests[-1]["path"] == "/echo/7"
    assert requests[-1]["headers"]["Authorization"] == "Bearer s3cr3t"


def test_http_request_sends_basic_auth(ctx_for, http_server):
    # given basic auth / when run / then the Authorization header carries the credentials
    base, requests = http_server
    run(ctx_for("http.request", {"url": base, "auth": {"type": "basic", "username": "u", "password": "p"}}))
    assert requests[-1]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (200, "success"),
        (201, "success"),
        (404, "client_error"),
        (422, "client_error"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_http_request_action_follows_the_status_class(ctx_for, http_server, status, action):
    # given a server answering with a status / when run / then 2xx success, 4xx client_error, 5xx server_error
    base, _ = http_server
    result = run(ctx_for("http.request", {"url": f"{base}/status/{status}"}))
    assert result.action == action
    assert result.output["status_code"] == status and result.output["success"] is (status < 300)


def test_http_request_follows_redirects_unless_told_not_to(ctx_for, http_server):
    # given a redirecting URL
    base, requests = http_server
    # when run with the default / then the redirect is followed to its target
    followed = run(ctx_for("http.request", {"url": f"{base}/redirect"}))
    assert followed.output["status_code"] == 200 and requests[-1]["path"] == "/landed"
    # when run with follow_redirects false / then the 302 is the answer, which is not a failure
    kept = run(ctx_for("http.request", {"url": f"{base}/redirect", "follow_redirects": False}))
    assert (kept.output["status_code"], kept.output["success"], kept.action) == (302, False, "success")


def test_http_request_returns_text_bodies_as_text(ctx_for, http_server):
    # given text and broken JSON responses / when run / then the body is the text
    base, _ = http_server
    assert run(ctx_for("http.request", {"url": f"{base}/text"})).output["body"] == "plain words"
    assert run(ctx_for("http.request", {"url": f"{base}/bad-json"})).output["body"] == "{not json"


def test_http_request_client_timeout_is_a_node_timeout(ctx_for, http_server):
    # given a server slower than the node's timeout
    base, _ = http_server
    ctx = ctx_for("http.request", {"url": f"{base}/slow/2"}, timeout=0.2)
    # when run / then it is a timeout (action timeout), not a plain error
    with pytest.raises(NodeTimeoutError) as caught:
        run(ctx)
    assert caught.value.action == "timeout" and caught.value.retryable


def test_http_request_connection_refused_is_a_retryable_error(ctx_for):
    # given a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # when run / then a retryable NodeError
    with pytest.raises(NodeError) as caught:
        run(ctx_for("http.request", {"url": f"http://127.0.0.1:{port}/"}))
    assert caught.value.retryable and not isinstance(caught.value, NodeTimeoutError)


@pytest.mark.parametrize(
    "params",
    [{"url": "ftp://example.com/x"}, {"url": "${input.u}"}, {"url": "http://x", "method": "${input.m}"}],
)
def test_http_request_bad_rendered_params_fail_permanently(ctx_for, params):
    # given params that are only wrong once rendered / when run / then it fails without retry
    with pytest.raises(PermanentNodeError):
        run(ctx_for("http.request", params, {"u": ["not", "a", "url"], "m": "FETCH"}))


def test_http_request_validate_accepts_full_params(param_problems):
    # given every param / when validated / then no problem
    params = {
        "url": "https://api.example.com/x",
        "method": "patch",
        "headers": {"A": "b", "N": 1},
        "query": {"q": "x", "many": [1, 2]},
        "body": {"k": "v"},
        "auth": {"type": "basic", "username": "u", "password": "${secrets.P}"},
        "follow_redirects": False,
        "timeout": "3s",
    }
    assert param_problems("http.request", params) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("url", "missing required parameter 'url'")]),
        (
            {"url": "example.com"},
            [("url", "'url' must be an absolute http:// or https:// URL, got 'example.com'")],
        ),
        (
            {"url": "http://x", "method": "FETCH"},
            [("method", "'method' must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, got 'FETCH'")],
        ),
        ({"url": "http://x", "headers": ["a"]}, [("headers", "'headers' must be a mapping, got a list")]),
        (
            {"url": "http://x", "headers": {"A": {"b": 1}}},
            [("headers.A", "'headers.A' must be text or a number, got a mapping")],
        ),
        ({"url": "http://x", "auth": {"username": "u"}}, [("auth", "missing 'auth.type' (basic or bearer)")]),
        (
            {"url": "http://x", "auth": {"type": "digest"}},
            [("auth.type", "'auth.type' must be one of basic, bearer, got 'digest'")],
        ),
        ({"url": "http://x", "auth": {"type": "bearer"}}, [("auth", "bearer auth needs 'auth.token'")]),
        (
            {"url": "http://x", "auth": {"type": "basic", "username": "u"}},
            [("auth", "basic auth needs 'auth.password'")],
        ),
        (
            {"url": "http://x", "follow_redirects": "yes"},
            [("follow_redirects", "'follow_redirects' must be true or false, got a string")],
        ),
        (
            {"url": "http://x", "verb": "GET"},
            [
                (
                    "verb",
                    "unknown parameter 'verb' (expected one of: auth, body, follow_redirects, headers, "
                    "method, query, url)",
                )
            ],
        ),
    ],
)
def test_http_request_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each problem has its path and message
    assert param_problems("http.request", params) == expected
