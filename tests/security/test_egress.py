"""Outbound HTTP of flows on real workers: the metadata service refused (directly and through a redirect),
loopback refused where private networks are, an allowlisted host reached, a 64 MiB answer cut at the limit
with the worker whole. Every server here is the test's own, on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.api_steps import create_flow, start_run
from tests.security.helpers import pool_pids, transform_flow, wait_all

pytestmark = [pytest.mark.faults]

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
METADATA_REFUSED = (
    "address 169.254.169.254 is not allowed: the cloud metadata service, which is always refused"
)
LOOPBACK_REFUSED = (
    "address 127.0.0.1 is not allowed: a loopback address (127.0.0.0/8); private and loopback addresses are "
    "refused unless FLOWRUNNER_HTTP_ALLOW_PRIVATE=true or the host is listed in FLOWRUNNER_HTTP_ALLOWED_HOSTS"
)
LIMIT_NAMED = "response body over the limit of 10485760 bytes (10 MiB, FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES)"
BIG = 64 * 1024 * 1024
STRICT_QUEUE = "egress_strict"


class _Handler(BaseHTTPRequestHandler):
    """GET or POST /to?location=<url> → 302 there; /big → 64 MiB written as it goes (no Content-Length);
    anything else → 200 JSON naming the path."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.paths.append(url.path)  # type: ignore[attr-defined]
        if url.path == "/to":
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["location"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/big":
            self._big()
        else:
            body = json.dumps({"reached": url.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_POST = do_GET

    def _big(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        block, sent = b"x" * 65536, 0
        try:
            while sent < BIG:
                self.wfile.write(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.server.big_sent.append(sent)  # type: ignore[attr-defined]


def _serve(address: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer((address, 0), _Handler)
    server.daemon_threads = True
    server.paths, server.big_sent = [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def local_servers() -> Iterator[dict[str, ThreadingHTTPServer]]:
    """Test servers on 127.0.0.1 and 127.0.0.2 (both loopback) → {address: server}."""
    servers = {address: _serve(address) for address in ("127.0.0.1", "127.0.0.2")}
    try:
        yield {address: server for address, (server, _) in servers.items()}
    finally:
        for server, thread in servers.values():
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _url(server: ThreadingHTTPServer, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def _flow(kind: str, url: str, queue: str | None = None) -> str:
    where = f"\n    queue: {queue}" if queue else ""
    return (
        "metadata: {name: egress}\n"
        "nodes:\n"
        "  call:\n"
        f"    type: {kind}\n"
        f"    timeout: 30s{where}\n"
        f"    params: {{url: {json.dumps(url)}}}\n"
    )


def _run_all(api, flows: dict[str, str], timeout: float = 90) -> dict[str, dict]:
    runs = {name: start_run(api, create_flow(api, content)) for name, content in flows.items()}
    ended = wait_all(api, list(runs.values()), timeout=timeout)
    for name, execution_id in runs.items():
        print(f"\n  {name}: {ended[execution_id]['status']}: {ended[execution_id]['error']}", end="")
    return {name: ended[execution_id] for name, execution_id in runs.items()}


def test_egress_metadata_address_is_refused_directly_and_through_a_redirect(stack, live_api, local_servers):
    # given flows calling the metadata service directly (http.request, webhook) and through an allowed
    # host's 302, on the stack's worker, which allows private networks
    local = local_servers["127.0.0.1"]
    redirect = _url(local, "/to?location=" + METADATA)
    flows = {
        "direct": _flow("http.request", METADATA),
        "webhook": _flow("webhook", METADATA),
        "redirect": _flow("http.request", redirect),
    }
    # when they run
    ended = _run_all(live_api, flows)
    # then each fails with the refusal, the redirect's naming the hop, and the allowed first hop was made
    for name in flows:
        assert ended[name]["status"] == "failed", ended[name]
        assert METADATA_REFUSED in ended[name]["error"], ended[name]["error"]
    assert f"GET {redirect}: a redirect to 169.254.169.254: {METADATA_REFUSED}" in ended["redirect"]["error"]
    assert local.paths == ["/to"]


def test_egress_with_private_networks_refused_loopback_is_refused_and_an_allowlisted_host_is_reached(
    stack, live_api, local_servers
):
    # given a worker with the shared-server default (private networks refused) and only 127.0.0.2 allowlisted
    stack.start_worker(
        "strict",
        [STRICT_QUEUE],
        concurrency=1,
        default_queues=False,
        env={"FLOWRUNNER_HTTP_ALLOW_PRIVATE": "false", "FLOWRUNNER_HTTP_ALLOWED_HOSTS": "127.0.0.2"},
    )
    first, second = local_servers["127.0.0.1"], local_servers["127.0.0.2"]
    to_loopback = _url(second, "/to?location=" + _url(first, "/secret"))
    flows = {
        "loopback": _flow("http.request", _url(first, "/secret"), STRICT_QUEUE),
        "webhook": _flow("webhook", _url(first, "/secret"), STRICT_QUEUE),
        "allowlisted": _flow("http.request", _url(second, "/open"), STRICT_QUEUE),
        "redirect to loopback": _flow("http.request", to_loopback, STRICT_QUEUE),
    }
    try:
        # when they run on it
        ended = _run_all(live_api, flows)
    finally:
        stack.stop_worker("strict")
    # then loopback is refused, directly and after a redirect from the allowlisted host, which is reached
    for name in ("loopback", "webhook", "redirect to loopback"):
        assert ended[name]["status"] == "failed", ended[name]
        assert LOOPBACK_REFUSED in ended[name]["error"], ended[name]["error"]
    assert f"a redirect to 127.0.0.1: {LOOPBACK_REFUSED}" in ended["redirect to loopback"]["error"]
    assert ended["allowlisted"]["status"] == "completed", ended["allowlisted"]
    assert ended["allowlisted"]["results"]["body"] == {"reached": "/open"}
    assert first.paths == [] and sorted(second.paths) == ["/open", "/to"]


def test_egress_a_64_mib_answer_fails_the_node_naming_the_limit_and_the_worker_runs_the_next_flow(
    stack, live_api, local_servers
):
    # given a server answering 64 MiB without a Content-Length, and the worker's pool processes
    local = local_servers["127.0.0.1"]
    worker = stack.children["worker-w1"]
    pool_before = pool_pids(worker.pid)
    log_offset = worker.log_path.stat().st_size
    # when a flow (and a webhook) calls it under the default 10 MiB limit
    started = time.monotonic()
    ended = _run_all(
        live_api,
        {"big": _flow("http.request", _url(local, "/big")), "webhook": _flow("webhook", _url(local, "/big"))},
    )
    failed_in = time.monotonic() - started
    # then the nodes fail naming the limit, and the worker stopped reading long before the end of the body
    for name in ("big", "webhook"):
        assert ended[name]["status"] == "failed", ended[name]
        assert LIMIT_NAMED in ended[name]["error"], ended[name]["error"]
    assert len(local.big_sent) == 2 and all(sent < BIG for sent in local.big_sent), local.big_sent
    # and the same worker, with the same pool processes, runs the next flow
    started = time.monotonic()
    after = wait_all(
        live_api, [start_run(live_api, create_flow(live_api, transform_flow("next", "return {n: 1}")))]
    )
    next_in = time.monotonic() - started
    assert next(iter(after.values()))["status"] == "completed"
    assert worker.alive() and pool_pids(worker.pid) == pool_before
    log = worker.log_path.read_bytes()[log_offset:].decode("utf-8", "replace")
    assert "WorkerLostError" not in log and "exited prematurely" not in log
    print(
        f"\n64 MiB answers: failed in {failed_in:.1f}s after {[s >> 20 for s in local.big_sent]} MiB sent; "
        f"the next flow took {next_in:.2f}s on the same pool processes {sorted(pool_before)}"
    )
