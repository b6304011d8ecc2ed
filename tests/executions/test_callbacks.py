"""Completion callbacks: the URL a run may name, and the signed delivery of its ExecutionStatus."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import ValidationFailed
from executions.callbacks import callback_deliver, callback_url_validate
from executions.models import Execution
from flows.services import flow_create


def test_callback_url_validate_accepts_http_and_https(settings):
    # given a policy that refuses private addresses
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    # when public URLs are checked / then they come back as given
    assert callback_url_validate("https://hooks.example.com/done?x=1") == "https://hooks.example.com/done?x=1"
    assert callback_url_validate(" http://93.184.216.34:8080/cb ") == "http://93.184.216.34:8080/cb"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must be a non-empty string"),
        (42, "must be a non-empty string"),
        ("ftp://example.com/x", "must be an http or https URL"),
        ("https:///path", "must name a host"),
        ("https://user:pw@example.com/", "must not carry credentials"),
        ("https://example.com:99999/", "is not a valid URL"),
        ("https://example.com/a b", "must not contain spaces"),
        ("http://\x85", "must not contain spaces or control characters"),
        ("https://example.com/\x9b[0m", "must not contain spaces or control characters"),
        ("https://example.com/\x7f", "must not contain spaces or control characters"),
        ("http://169.254.169.254/latest", "is not allowed: address 169.254.169.254 is the cloud metadata"),
        ("http://127.0.0.1:9/", "is not allowed: address 127.0.0.1 is a loopback address"),
        ("https://example.com/" + "a" * 2000, "must be at most 2000 characters"),
    ],
)
def test_callback_url_validate_refuses_with_a_precise_message(settings, url, message):
    # given a policy that refuses private addresses
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    # when the URL is checked
    with pytest.raises(ValidationFailed) as raised:
        callback_url_validate(url)
    # then the error names the field and the reason
    assert message in raised.value.message
    assert raised.value.details[0]["path"] == "callback_url"


def test_callback_url_validate_allows_loopback_when_private_is_allowed(settings):
    # given a policy that allows private addresses (embedded mode, tests)
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = True
    # when / then a loopback receiver is accepted
    assert callback_url_validate("http://127.0.0.1:8123/cb") == "http://127.0.0.1:8123/cb"


# --- delivery -------------------------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers each POST with the next of `codes` (then 200)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.codes.pop(0) if receiver.codes else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/done?token=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(codes: list[int] | None = None) -> Receiver:
        made.append(Receiver(codes))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def ended(member, settings):
    """A completed execution whose callback goes to a URL set by the test."""
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = True
    settings.FLOWRUNNER_CALLBACK_RETRY_WAIT = 2.0
    settings.FLOWRUNNER_CALLBACK_MAX_ATTEMPTS = 3
    account, user = member
    flow = flow_create(
        account=account,
        user=user,
        content="metadata: {name: cb}\nnodes: {a: {type: log, params: {message: m}}}",
    )

    def make(url: str) -> Execution:
        return Execution.objects.create(
            account=account,
            flow=flow,
            flow_version=flow.current_version,
            status="completed",
            results={"ok": True},
            progress=100,
            callback_url=url,
        )

    return make


def test_callback_deliver_posts_the_signed_execution_status(api, ended, receiver):
    # given a completed execution whose callback goes to a live receiver
    server = receiver()
    execution = ended(server.url)
    # when the first attempt is made
    attempt = callback_deliver(execution_id=execution.id, attempt=1)
    # then it is delivered: the body is the ExecutionStatus of GET /executions/{id}, signed with the secret
    # GET /accounts/me shows
    assert (attempt.delivered, attempt.retry_in) == (True, None)
    ((headers, body),) = server.requests
    assert json.loads(body) == api.get(f"/api/v1/executions/{execution.id}").json()
    secret = api.get("/api/v1/accounts/me").json()["callback_secret"]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-FlowRunner-Signature"] == expected
    assert headers["Content-Type"] == "application/json"
    # and the attempt is in the execution's logs, its URL without the query
    (log,) = [
        row
        for row in api.get(f"/api/v1/executions/{execution.id}/logs").json()
        if "callback" in row["message"]
    ]
    assert log["level"] == "info"
    assert log["message"] == f"callback delivered to {server.url.split('?')[0]} (attempt 1): HTTP 200"
    assert "token" not in json.dumps(log)
    execution.refresh_from_db()
    assert execution.callback_delivered_at is not None and execution.callback_attempts == 1


def test_callback_deliver_failure_asks_for_a_later_attempt_with_backoff_then_gives_up(api, ended, receiver):
    # given a receiver that fails every time
    server = receiver([500, 502, 503])
    execution = ended(server.url)
    # when every attempt is made / then the waits double, and the last attempt gives up
    assert callback_deliver(execution_id=execution.id, attempt=1).retry_in == 2.0
    assert callback_deliver(execution_id=execution.id, attempt=2).retry_in == 4.0
    last = callback_deliver(execution_id=execution.id, attempt=3)
    assert (last.delivered, last.retry_in) == (False, None)
    assert len(server.requests) == 3
    messages = [row["message"] for row in api.get(f"/api/v1/executions/{execution.id}/logs").json()]
    assert messages[-1].endswith("(attempt 3 of 3): HTTP 503; giving up")
    assert messages[-3].endswith("(attempt 1 of 3): HTTP 500; next in 2s")


def test_callback_deliver_is_safe_to_run_twice(ended, receiver):
    # given a delivered first attempt
    server = receiver()
    execution = ended(server.url)
    callback_deliver(execution_id=execution.id, attempt=1)
    # when the same attempt runs again (a redelivered message), or a later one
    again = callback_deliver(execution_id=execution.id, attempt=1)
    later = callback_deliver(execution_id=execution.id, attempt=2)
    # then nothing more is sent
    assert (again.delivered, again.retry_in, later.retry_in) == (False, None, None)
    assert len(server.requests) == 1


def test_callback_deliver_refused_by_the_egress_policy_is_not_retried(api, ended, receiver, settings):
    # given a loopback receiver and a policy that refuses private addresses
    server = receiver()
    execution = ended(server.url)
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    # when the attempt is made
    attempt = callback_deliver(execution_id=execution.id, attempt=1)
    # then nothing is sent, no retry is asked, and the log says why
    assert (attempt.delivered, attempt.retry_in) == (False, None)
    assert server.requests == []
    message = api.get(f"/api/v1/executions/{execution.id}/logs").json()[-1]["message"]
    assert "is not allowed" in message and message.endswith("giving up")


def test_run_request_names_a_callback_url_or_is_refused(api, member, settings):
    # given a flow and a policy that refuses private addresses
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    account, user = member
    flow = flow_create(
        account=account,
        user=user,
        content="metadata: {name: cb}\nnodes: {a: {type: log, params: {message: m}}}",
    )
    # when run with a public callback URL / then it is kept on the execution
    response = api.post(
        f"/api/v1/flows/{flow.id}/run", {"callback_url": "https://example.com/cb"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Execution.objects.get(id=response.json()["execution_id"]).callback_url == "https://example.com/cb"
    # when run with a refused one / then 400 naming the field, and nothing is started
    response = api.post(f"/api/v1/flows/{flow.id}/run", {"callback_url": "http://10.0.0.1/cb"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["path"] == "callback_url"
    assert Execution.objects.filter(flow=flow).count() == 1


def test_account_callback_secret_is_made_once_and_stays(api, member):
    # when the account is read twice / then the same secret is shown, and it is stored encrypted
    first = api.get("/api/v1/accounts/me").json()["callback_secret"]
    assert first.startswith("frcb_") and api.get("/api/v1/accounts/me").json()["callback_secret"] == first
    member[0].refresh_from_db()
    assert first not in member[0].callback_secret


def test_callback_sweep_sends_the_first_attempt_an_end_never_sent(ended, monkeypatch):
    # Given ended executions with callbacks: one whose first attempt was never published (a minute ago), one
    # just ended (its own end sends it), one already attempted, one without a callback
    from datetime import timedelta

    from django.utils import timezone

    from executions import lifecycle

    sent: list[str] = []
    monkeypatch.setattr(lifecycle, "send_callback", lambda execution_id: sent.append(str(execution_id)))
    minute_ago = timezone.now() - timedelta(minutes=1)
    lost = ended("http://127.0.0.1:9/cb")
    fresh = ended("http://127.0.0.1:9/cb")
    tried = ended("http://127.0.0.1:9/cb")
    silent = ended("")
    Execution.objects.filter(id__in=[lost.id, tried.id, silent.id]).update(finished_at=minute_ago)
    Execution.objects.filter(id=fresh.id).update(finished_at=timezone.now())
    Execution.objects.filter(id=tried.id).update(callback_attempts=1)
    # When the periodic sweep runs
    count = lifecycle.callbacks_resend_lost()
    # Then only the lost one is sent, once
    assert sent == [str(lost.id)] and count == 1
