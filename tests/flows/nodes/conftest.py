"""A small NodeContext for node-kind unit tests (V8 via py_mini_racer, a dict store), a local HTTP server."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from py_mini_racer import JSEvalException, MiniRacer

from flows.dsl.spec import NodeSpec
from flows.nodes.base import NodeError

_WHOLE = re.compile(r"^\$\{([^{}]*)\}$")
_PART = re.compile(r"\$\{([^{}]*)\}")


class DictStore:
    """The Store protocol over a dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def list(self, prefix: str = "") -> dict[str, Any]:
        return {k: v for k, v in sorted(self.data.items()) if k.startswith(prefix)}

    def increment(self, key: str, by: float = 1) -> float:
        current = self.data.get(key, 0)
        if not isinstance(current, int | float) or isinstance(current, bool):
            raise ValueError(f"cannot increment {key!r}: it holds {current!r}")
        self.data[key] = current + by
        return self.data[key]


class FakeContext:
    """What the engine gives a node, reduced for unit tests; `logs` collects ctx.log and console.*."""

    def __init__(
        self,
        node: NodeSpec,
        document: dict[str, Any] | None = None,
        *,
        results: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.node = node
        self.document = document if document is not None else {}
        self.results = results or {}
        self.secrets = secrets or {}
        self.execution = {"id": "exec-1", "flow_id": "flow-1", "account_id": "acct-1"}
        self.timeout = timeout if timeout is not None else node.timeout
        self.store = DictStore()
        self.logs: list[tuple[str, str, Any]] = []
        self.scripts: list[str] = []

    def run_script(self, source: str, *, input: Any = None, extra: dict[str, Any] | None = None) -> Any:
        self.scripts.append(source)
        globals_ = {
            "input": self.document if input is None else input,
            "shared": self.document,
            "results": self.results,
            "secrets": self.secrets,
            "execution": self.execution,
            **(extra or {}),
        }
        setup = "".join(f"globalThis[{json.dumps(k)}] = {json.dumps(v)};\n" for k, v in globals_.items())
        setup += (
            "globalThis.__logs = [];\n"
            "globalThis.console = Object.fromEntries(['log', 'info', 'warn', 'error'].map("
            "level => [level, (...args) => __logs.push([level, args.join(' ')])]));\n"
        )
        racer = MiniRacer()
        try:
            racer.eval(setup)
            try:
                raw = racer.eval("JSON.stringify((function() {\n" + source + "\n})()) ?? 'null'")
            except JSEvalException as exc:
                raise NodeError(f"script failed: {exc}")
            for level, message in json.loads(racer.eval("JSON.stringify(__logs)")):
                self.logs.append((level, message, None))
            return json.loads(raw)
        finally:
            racer.close()

    def render(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _WHOLE.match(value)
        if whole:
            return self.run_script(f"return ({whole.group(1)});")

        def text(match: re.Match[str]) -> str:
            result = self.run_script(f"return ({match.group(1)});")
            return result if isinstance(result, str) else json.dumps(result)

        return _PART.sub(text, value)

    def log(self, level: str, message: str, data: Any = None) -> None:
        self.logs.append((level, message, data))


def make_node(type: str, params: dict[str, Any] | None = None, **fields: Any) -> NodeSpec:
    return NodeSpec(id=fields.pop("id", "node"), type=type, params=params or {}, **fields)


@pytest.fixture
def ctx_for():
    """ctx_for(type, params, document=None, **NodeSpec/FakeContext fields) -> FakeContext."""

    def build(type: str, params: dict[str, Any] | None = None, document: dict[str, Any] | None = None, **kw):
        context_kw = {k: kw.pop(k) for k in ("results", "secrets") if k in kw}
        if "ctx_timeout" in kw:
            context_kw["timeout"] = kw.pop("ctx_timeout")
        return FakeContext(make_node(type, params, **kw), document, **context_kw)

    return build


class _Handler(BaseHTTPRequestHandler):
    """Routes: /status/<code>, /slow/<seconds>, /text, /redirect, /bad-json, /to?location=<url> (302),
    /hops/<n> (n redirects, then 200), /big/<bytes>[?declared=1] (streamed, Content-Length only if declared),
    /gzip/<bytes> (that many zeros, gzip-encoded), /trickle/<bytes>/<seconds apart>; anything else echoes."""

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (a timeout test): nothing to tell it

    def _stream(self, size: int, *, declared: bool, chunk: int = 65536, pause: float = 0.0) -> None:
        """`size` bytes of "x", written as they go (never held whole); a client that hangs up ends it."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if declared:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"x" * chunk
        try:
            while size > 0:
                self.wfile.write(block[:size])
                size -= chunk
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.requests.append(  # type: ignore[attr-defined]
            {"method": self.command, "path": url.path, "headers": dict(self.headers.items()), "body": body}
        )
        parts = url.path.strip("/").split("/")
        if parts[0] == "status":
            self._send(int(parts[1]), json.dumps({"status": int(parts[1])}).encode(), "application/json")
        elif parts[0] == "slow":
            time.sleep(float(parts[1]))
            self._send(200, b"late", "text/plain")
        elif parts[0] == "text":
            self._send(200, b"plain words", "text/plain; charset=utf-8")
        elif parts[0] == "bad-json":
            self._send(200, b"{not json", "application/json")
        elif parts[0] == "redirect":
            self._send(302, b"", "text/plain", {"Location": "/landed"})
        elif parts[0] == "to":
            self._send(302, b"", "text/plain", {"Location": parse_qs(url.query)["location"][0]})
        elif parts[0] == "hops":
            left = int(parts[1])
            if left:
                self._send(302, b"", "text/plain", {"Location": f"/hops/{left - 1}"})
            else:
                self._send(200, b"landed", "text/plain")
        elif parts[0] == "big":
            self._stream(int(parts[1]), declared="declared" in parse_qs(url.query))
        elif parts[0] == "gzip":
            self._send(200, gzip.compress(bytes(int(parts[1]))), "text/plain", {"Content-Encoding": "gzip"})
        elif parts[0] == "trickle":
            self._stream(int(parts[1]), declared=True, chunk=1, pause=float(parts[2]))
        else:
            echo = {
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
            self._send(200, json.dumps(echo).encode(), "application/json")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


@pytest.fixture
def loopback_allowed(settings):
    """The egress policy as in embedded mode: loopback (private, refused on a shared server) is reachable."""
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = True


@pytest.fixture
def http_server(loopback_allowed):
    """A real HTTP server on 127.0.0.1 (random port) in a thread; yields (base_url, requests received); nodes
    may reach it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    # A short poll interval: shutdown() waits for the next poll, 0.5 s by default, on every test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def param_problems():
    """param_problems(type, params) -> [(path_suffix, message)] from the kind's validate_params."""
    from flows.nodes.registry import get_kind

    def collect(type: str, params: dict[str, Any]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        get_kind(type).validate_params(params, lambda path, message: found.append((path, message)))
        return found

    return collect
