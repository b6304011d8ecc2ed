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


def test_http_request_connection_refused_is_a_retryable_error(ctx_for, loopback_allowed):
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


@pytest.fixture
def no_connection(monkeypatch):
    """Fails the test if any socket connection is attempted; records the addresses of allowed ones."""
    attempted: list[str] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        attempted.append(address[0])
        assert address[0] == "127.0.0.1", f"a connection to {address} was attempted"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempted


def test_http_request_refuses_the_metadata_address_before_connecting(
    ctx_for, loopback_allowed, no_connection
):
    # given a flow calling the cloud metadata service (private networks allowed, as in embedded mode)
    ctx = ctx_for("http.request", {"url": "http://169.254.169.254/latest/meta-data/"})
    # when run / then it fails permanently saying the address is not allowed and why, with no connection tried
    with pytest.raises(PermanentNodeError) as caught:
        run(ctx)
    assert caught.value.message == (
        "GET http://169.254.169.254/latest/meta-data/: address 169.254.169.254 is not allowed: "
        "the cloud metadata service, which is always refused"
    )
    assert caught.value.type == "egress_refused" and not caught.value.retryable
    assert no_connection == []


def test_http_request_refuses_a_redirect_to_the_metadata_address(ctx_for, http_server, no_connection):
    # given an allowed server answering a 302 to the metadata service
    base, requests = http_server
    ctx = ctx_for("http.request", {"url": f"{base}/to", "query": {"location": "http://169.254.169.254/x"}})
    # when run
    with pytest.raises(PermanentNodeError) as caught:
        run(ctx)
    # then the first hop was made, the second refused before connecting, and the message names the hop
    assert [r["path"] for r in requests] == ["/to"] and no_connection == ["127.0.0.1"]
    assert "a redirect to 169.254.169.254: address 169.254.169.254 is not allowed" in caught.value.message
    assert caught.value.message.endswith("the cloud metadata service, which is always refused")


def test_http_request_refuses_loopback_when_private_networks_are_not_allowed(ctx_for, http_server, settings):
    # given a shared server's policy (private refused) and a local server
    base, requests = http_server
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    # when a flow calls it / then refused with the reason and how to allow it, and nothing reached the server
    with pytest.raises(PermanentNodeError, match=r"address 127\.0\.0\.1 is not allowed: a loopback address"):
        run(ctx_for("http.request", {"url": f"{base}/echo"}))
    assert requests == []


def test_http_request_allowed_hosts_admit_a_listed_private_host(ctx_for, http_server, settings):
    # given private networks refused but 127.0.0.1 allowlisted
    base, _ = http_server
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    settings.FLOWRUNNER_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    # when a flow calls it / then it answers
    assert run(ctx_for("http.request", {"url": f"{base}/echo"})).output["status_code"] == 200


@pytest.mark.parametrize("route", ["/big/1048576", "/big/1048576?declared=1", "/gzip/1048576"])
def test_http_request_body_over_the_limit_fails_naming_it(ctx_for, http_server, settings, route):
    # given a 64 KiB limit and a 1 MiB body (streamed, declared, or gzip-compressed to a few KiB)
    base, _ = http_server
    settings.FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES = 65536
    # when run / then the node fails permanently, naming the limit
    with pytest.raises(PermanentNodeError) as caught:
        run(ctx_for("http.request", {"url": base + route}))
    assert caught.value.message.endswith(
        "response body over the limit of 65536 bytes (FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES)"
    )
    assert caught.value.type == "response_too_large"


def test_http_request_body_at_the_limit_is_read_whole(ctx_for, http_server, settings):
    # given a body exactly as large as the limit / when run / then it is the output
    base, _ = http_server
    settings.FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES = 65536
    assert run(ctx_for("http.request", {"url": f"{base}/big/65536"})).output["body"] == "x" * 65536


def test_http_request_redirects_are_limited(ctx_for, http_server, settings):
    # given at most two redirects
    base, _ = http_server
    settings.FLOWRUNNER_HTTP_MAX_REDIRECTS = 2
    # when two are needed / then they are followed
    assert run(ctx_for("http.request", {"url": f"{base}/hops/2"})).output["body"] == "landed"
    # when three are needed / then the node fails permanently naming the limit
    with pytest.raises(PermanentNodeError, match=r"more than 2 redirects \(FLOWRUNNER_HTTP_MAX_REDIRECTS\)"):
        run(ctx_for("http.request", {"url": f"{base}/hops/3"}))


def test_http_request_a_trickling_body_is_a_timeout(ctx_for, http_server):
    # given a server sending one byte every 0.1 s, each within the client's read timeout, for 3 s in all
    base, _ = http_server
    ctx = ctx_for("http.request", {"url": f"{base}/trickle/30/0.1"}, timeout=0.5)
    # when run with a 0.5 s timeout / then the whole body's deadline makes it a timeout
    with pytest.raises(NodeTimeoutError):
        run(ctx)
