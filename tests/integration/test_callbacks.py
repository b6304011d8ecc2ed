"""Completion callbacks with real daphne and workers: a receiver on 127.0.0.1 that fails twice gets exactly
one successful, signed delivery of the ExecutionStatus, and every attempt is in the execution's logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.api_steps import create_flow, logs, wait_for

QUICK = """
metadata: {name: quick}
nodes:
  a: {type: transform, params: {script: "return {answer: 42}"}}
"""


class Receiver:
    """Answers each POST with the next of `codes`, then 200; keeps every request."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.requests: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = receiver.codes.pop(0) if receiver.codes else 200
                receiver.requests.append((code, dict(self.headers), body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/done"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver([500, 503])
    yield server
    server.close()


def _poll(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_callbacks_receiver_gets_one_signed_delivery_after_two_failures(live_api, receiver):
    # given a flow, and a run request naming a receiver that fails twice before it accepts
    flow_id = create_flow(live_api, QUICK)
    response = live_api.post(f"/flows/{flow_id}/run", json={"input": {}, "callback_url": receiver.url})
    assert response.status_code == 201, response.text
    execution_id = response.json()["execution_id"]
    # when the execution completes
    final = wait_for(live_api, execution_id)
    assert final["status"] == "completed"
    # then the receiver is called three times (retried with backoff) and the third answer is a success
    _poll(lambda: len(receiver.requests) >= 3, 30, "three callback attempts")
    _poll(
        lambda: any("callback delivered" in row["message"] for row in logs(live_api, execution_id)),
        10,
        "the delivery in the logs",
    )
    # past when a fourth attempt would have come (the next backoff is 0.8s): nothing more is sent
    time.sleep(1.5)
    assert [code for code, _, _ in receiver.requests] == [500, 503, 200]
    # and each body is the ExecutionStatus of GET /executions/{id}, signed with the account's callback secret
    secret = live_api.get("/accounts/me").json()["callback_secret"]
    for _, headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-FlowRunner-Signature"] == expected
        assert json.loads(body) == live_api.get(f"/executions/{execution_id}").json()
    # and every attempt is in the execution's logs, with the waits doubling
    attempts = [row["message"] for row in logs(live_api, execution_id) if "callback" in row["message"]]
    assert attempts == [
        f"callback to {receiver.url} failed (attempt 1 of 8): HTTP 500; next in 0.2s",
        f"callback to {receiver.url} failed (attempt 2 of 8): HTTP 503; next in 0.4s",
        f"callback delivered to {receiver.url} (attempt 3): HTTP 200",
    ]
