"""Secret values appear nowhere but as ciphertext: PostgreSQL, API answers, logs, events, frames, broker."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from websockets.asyncio.client import connect

from tests.integration.api_steps import create_flow, start_run
from tests.security.helpers import wait_all

pytestmark = [pytest.mark.faults]

# A flow that uses the secret every way a flow may: logged (text, object, URL-encoded), templated into a URL
# and a header, echoed by an error edge's handler, then thrown in an error.
USES_SECRETS = """
metadata: {name: uses secrets}
nodes:
  log:
    type: transform
    params:
      script: |
        console.log('token is', secrets.API_TOKEN);
        console.warn({nested: {token: secrets.API_TOKEN, other: secrets.OTHER}});
        console.error('encoded ' + encodeURIComponent(secrets.API_TOKEN));
        return {token_length: secrets.API_TOKEN.length};
    next: {success: call}
  call:
    type: http.request
    timeout: 2s
    params:
      url: "http://127.0.0.1:9/${secrets.API_TOKEN}"
      headers: {Authorization: "Bearer ${secrets.API_TOKEN}"}
    next: {error: explode}
  explode:
    type: transform
    params:
      script: "throw new Error('upstream said ' + input.error.message + ' for ' + secrets.OTHER)"
"""
# Runs waiting in the broker: one on a queue no worker consumes, one a countdown the worker holds unacked.
PENDING = """
metadata: {name: pending}
nodes:
  nowhere:
    type: transform
    queue: nobody_listens_here
    params: {script: "return secrets.API_TOKEN.length"}
"""
COUNTDOWN = """
metadata: {name: countdown}
nodes:
  use:
    type: transform
    params: {script: "console.log(secrets.OTHER); return {n: secrets.OTHER.length}"}
    next: {success: later}
  later: {type: wait, params: {duration: 10m}}
"""


def _plaintexts() -> dict[str, str]:
    # Unique values: a hit anywhere can only be a leak of these.
    return {"API_TOKEN": f"tok{secrets.token_hex(12)}", "OTHER": f"oth{secrets.token_hex(12)}"}


def _forms(value: str) -> list[str]:
    """The value as text, and hex-encoded (how a bytea column or a careless dump would show it)."""
    return [value, value.encode().hex()]


def _watch(live_stack, user, execution_id: str) -> list[str]:
    """Every frame a subscriber (by id, with replay, and by account) receives until the run completes."""

    async def scenario() -> list[str]:
        frames: list[str] = []
        async with connect(live_stack.ws_url, additional_headers=user.headers, open_timeout=20) as ws:
            await ws.send(json.dumps({"type": "subscribe_account"}))
            await ws.send(json.dumps({"type": "subscribe", "execution_id": execution_id, "since": 0}))
            async with asyncio.timeout(60):
                while True:
                    raw = await ws.recv()
                    frames.append(raw)
                    if json.loads(raw)["type"] == "complete":
                        return frames

    return asyncio.run(scenario())


def _postgres_hits(needles: list[str]) -> list[tuple[str, str]]:
    """(table, needle) for every row of every table whose text form contains a needle."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        hits = []
        for table in tables:
            for needle in needles:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" AS row WHERE strpos(row::text, %s) > 0', [needle]
                )
                if cursor.fetchone()[0]:
                    hits.append((table, needle))
    return hits


def _broker_payloads(url: str) -> dict[str, list[bytes]]:
    """key → every value under it in the broker's Redis db, message bodies also base64-decoded (as kombu
    encodes them): queue lists, the `unacked` hash of messages a worker holds, results, bindings, cache."""
    client = redis.Redis.from_url(url)
    found: dict[str, list[bytes]] = {}
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key) or b""]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind == "hash":
                values = list(client.hgetall(key).values())
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = client.zrange(key, 0, -1)
            else:
                values = []
            found[key.decode("utf-8", "replace")] = [
                part for value in values for part in (value, *_message_bodies(value))
            ]
    finally:
        client.close()
    return found


def _message_bodies(payload: bytes) -> list[bytes]:
    try:
        message = json.loads(payload)
    except ValueError:
        return []
    if isinstance(message, list) and message:  # the unacked hash holds [message, exchange, routing key]
        message = message[0]
    if not isinstance(message, dict) or "body" not in message:
        return []
    try:
        return [base64.b64decode(message["body"])]
    except (binascii.Error, TypeError, ValueError):
        return [str(message["body"]).encode()]


def test_secret_values_appear_nowhere_but_as_ciphertext(live_stack, live_user, live_api, live_db):
    from accounts import vault
    from accounts.models import Secret

    values = _plaintexts()
    needles = [form for value in values.values() for form in _forms(value)]
    answers: list[str] = []
    # given an account whose secrets a flow uses in every way, and runs waiting in the broker
    for key, value in values.items():
        response = live_api.put(f"/accounts/me/secrets/{key}", json={"value": value})
        answers.append(response.text)
        assert response.status_code == 201
    pending = start_run(live_api, create_flow(live_api, PENDING))
    countdown = start_run(live_api, create_flow(live_api, COUNTDOWN))
    execution_id = start_run(live_api, create_flow(live_api, USES_SECRETS))
    # when it runs to its end, watched over WebSocket, and its every trace is read back through the API
    frames = _watch(live_stack, live_user, execution_id)
    status = wait_all(live_api, [execution_id])[execution_id]
    paths = [
        f"/executions/{execution_id}",
        f"/executions/{execution_id}/logs",
        f"/executions/{execution_id}/nodes",
        f"/executions/{countdown}/logs",
        "/executions",
        "/flows",
        "/accounts/me/secrets",
        "/accounts/me",
    ]
    reads = {path: live_api.get(path).text for path in paths}
    answers += reads.values()
    deadline = time.monotonic() + 30
    while live_api.get(f"/executions/{countdown}").json()["current_node"] != "later":
        assert time.monotonic() < deadline, "the countdown node never started"
        time.sleep(0.1)
    by_key = _broker_payloads(live_stack.env["FLOWRUNNER_REDIS_URL"])
    broker = [payload for payloads in by_key.values() for payload in payloads]
    logs = {path.name: path.read_bytes() for path in Path(live_stack.workdir).glob("*.log")}
    rows = _postgres_hits(needles)
    # then the run did use the secrets (masked as *** where they would have shown)...
    assert status["status"] == "failed" and "***" in status["error"], status
    log_text = reads[f"/executions/{execution_id}/logs"]
    assert log_text.count("***") >= 4, log_text
    # ...yet no plaintext is in any API answer, WebSocket frame, log file, broker message or database row
    for needle in needles:
        assert not [a for a in answers if needle in a], needle
        assert not [f for f in frames if needle in f], needle
        assert not [name for name, text in logs.items() if needle.encode() in text], needle
        assert not [p for p in broker if needle.encode() in p], needle
    assert rows == []
    # while the broker really held those runs' tasks: one queued for no consumer, one held unacked (countdown)
    assert any(b"flowrunner.run_node" in p for p in by_key.get("nobody_listens_here", [])), sorted(by_key)
    assert any(b"flowrunner.resume_node" in p for p in by_key.get("unacked", [])), sorted(by_key)
    assert len(frames) > 5
    # ...and the database holds each secret once, as AES-GCM ciphertext that decrypts to the value
    stored = dict(Secret.objects.filter(account_id=live_user.account_id).values_list("key", "ciphertext"))
    assert {key: vault.decrypt(ciphertext) for key, ciphertext in stored.items()} == values
    assert all(value not in stored[key] for key, value in values.items())
    for execution in (pending, countdown):
        live_api.delete(f"/executions/{execution}")


RETURNS_SECRET = """
metadata: {name: returns a secret}
nodes:
  copy: {type: transform, params: {script: "return {copied: secrets.RETURNED, n: secrets.RETURNED.length}"}}
"""


@pytest.fixture
def returned_secret(live_api) -> tuple[str, str]:
    """(execution id, value) of a completed run whose script returned the secret's value as its output."""
    value = f"ret{secrets.token_hex(12)}"
    assert live_api.put("/accounts/me/secrets/RETURNED", json={"value": value}).status_code == 201
    execution_id = start_run(live_api, create_flow(live_api, RETURNS_SECRET))
    assert wait_all(live_api, [execution_id])[execution_id]["status"] == "completed"
    return execution_id, value


def test_a_secret_a_script_returns_is_masked_in_every_answer(
    live_stack, live_user, live_api, returned_secret
):
    execution_id, value = returned_secret
    # when the run is read back through the API and replayed over WebSocket
    status = live_api.get(f"/executions/{execution_id}").json()
    answers = [live_api.get(path).text for path in (f"/executions/{execution_id}/logs", "/executions")]
    frames = _watch(live_stack, live_user, execution_id)
    # then the value shows only as ***
    assert status["results"]["copied"] == "***"
    assert not [text for text in [*answers, *frames] if value in text]


def test_a_secret_a_script_returns_is_not_stored_in_clear(live_db, returned_secret):
    _, value = returned_secret
    assert _postgres_hits([value]) == []


# A secret reaches nodes whose code never names `secrets`: through batch items, the document and the store.
ROUTES_SECRET = """
metadata: {name: routes a secret}
nodes:
  fan:
    type: parallel_batch
    params:
      items: "${[secrets.ROUTED, 'plain']}"
      processor_script: "return {seen: input.items}"
    next: {success: keep}
  keep:
    type: store
    params: {operation: set, key: routed, value: "${input.seen[0]}"}
    next: {success: fetch}
  fetch:
    type: store
    params: {operation: get, key: routed, output_key: fetched}
    next: {success: echo}
  echo:
    type: transform
    params:
      script: |
        console.log("document says", input.seen[0]);
        return {echoed: input.seen[0], fetched_again: input.fetched};
    next: {success: call}
  call:
    type: http.request
    params:
      url: "ECHO_URL"
      method: POST
      headers: {X-Token: "${secrets.ROUTED}"}
      body: {token: "${secrets.ROUTED}"}
"""


class _Echo(BaseHTTPRequestHandler):
    """Answers a POST with what it received: its headers and body, as JSON."""

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        answer = json.dumps({"headers": dict(self.headers), "body": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/echo"
    finally:
        server.shutdown()
        server.server_close()


def test_a_secret_routed_through_items_the_document_the_store_and_http_is_stored_masked(
    live_stack, live_api, live_db, echo_url
):
    value = f"rtd{secrets.token_hex(12)}"
    assert live_api.put("/accounts/me/secrets/ROUTED", json={"value": value}).status_code == 201
    # given a flow that carries the secret from batch items into part outputs, the join, the store and the
    # document, through nodes whose code never names `secrets`, then sends it in a header and a body to a
    # server that answers both back
    execution_id = start_run(live_api, create_flow(live_api, ROUTES_SECRET.replace("ECHO_URL", echo_url)))
    # when it runs to its end
    status = wait_all(live_api, [execution_id])[execution_id]
    # then it completed with the value masked wherever it went
    assert status["status"] == "completed", status
    results = status["results"]
    assert results["seen"] == ["***", "plain"] and results["echoed"] == "***", results
    assert results["fetched"] == "***" and results["fetched_again"] == "***", results
    echoed = results["body"]
    assert echoed["headers"]["X-Token"] == "***" and "***" in echoed["body"], echoed
    # and no row of the database and no key of the broker's Redis holds it in clear
    needles = _forms(value)
    assert _postgres_hits(needles) == []
    by_key = _broker_payloads(live_stack.env["FLOWRUNNER_REDIS_URL"])
    assert not [key for key, payloads in by_key.items() for p in payloads for n in needles if n.encode() in p]
