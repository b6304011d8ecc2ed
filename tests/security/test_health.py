"""GET /api/v1/health on the real stack: 1,000 anonymous calls make (next to) no worker pings; the health token
still gets the worker count. Pings are counted on the broker, where Celery broadcasts them."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest
import redis

pytestmark = [pytest.mark.faults]

CALLS = 1000
HANDFUL = 3


class PingCounter:
    """Counts `ping` broadcasts to the stack's workers. Celery's pidbox fanout is a Redis PUBLISH on
    `/<db>.celery.pidbox`: channels are server-wide, so only the stack's db's is counted, not another test
    run's."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        db = self._client.connection_pool.connection_kwargs.get("db", 0)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(f"/{db}.celery.pidbox*")
        self.pings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message and self._is_ping(message["data"]):
                self.pings += 1

    @staticmethod
    def _is_ping(data: bytes) -> bool:
        try:
            envelope = json.loads(data)
            body = json.loads(base64.b64decode(envelope["body"]))
        except (ValueError, KeyError, TypeError):
            return False
        return body.get("method") == "ping"

    def settle(self) -> int:
        """The count once every message sent so far has been read."""
        time.sleep(0.5)
        return self.pings

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pubsub.close()
        self._client.close()


@pytest.fixture
def ping_counter(live_stack):
    counter = PingCounter(live_stack.env["FLOWRUNNER_REDIS_URL"])
    try:
        yield counter
    finally:
        counter.close()


def test_health_1000_anonymous_calls_cause_no_more_than_a_handful_of_worker_pings(stack, ping_counter):
    # given the running stack and a counter of the ping broadcasts on its broker
    started = time.monotonic()
    # when 1,000 anonymous calls are made, as fast as one client can
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        answers = [client.get("/health") for _ in range(CALLS)]
    anonymous_seconds = time.monotonic() - started
    anonymous_pings = ping_counter.settle()
    # then every answer is the bare status, and the workers were pinged a handful of times at most
    assert {(a.status_code, a.text) for a in answers} == {(200, '{"status":"ok"}')}
    assert anonymous_pings <= HANDFUL, anonymous_pings
    # and the health token still gets the worker count, which pings (so the counter does see pings)
    details = stack.health()
    assert details.status_code == 200 and details.json()["workers"] >= 1, details.text
    assert ping_counter.settle() >= anonymous_pings + 1
    print(
        f"\nhealth: {CALLS} anonymous calls in {anonymous_seconds:.1f}s caused {anonymous_pings} pings; "
        f"one call with the health token caused {ping_counter.pings - anonymous_pings}"
    )
