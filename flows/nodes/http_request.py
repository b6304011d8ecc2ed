"""The `http.request` kind: one HTTP call; the status class picks success, client_error or server_error."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from flows.nodes.base import (
    NodeContext,
    NodeError,
    NodeKind,
    NodeResult,
    NodeTimeoutError,
    PermanentNodeError,
    Report,
)
from flows.nodes.egress import EgressPolicy, EgressRefused, PinnedTransport
from flows.nodes.params import Checker, is_expression, is_number, run_mapping, run_string, type_name
from flows.nodes.registry import register

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
AUTH_TYPES = ("basic", "bearer")
DEFAULT_TIMEOUT = 30.0


def _scalar_text(value: Any) -> str:
    # Header and query values are text on the wire; booleans in their JSON spelling, as the Go original did.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def status_action(status_code: int) -> str:
    """2xx success, 4xx client_error, 5xx server_error; anything else (an unfollowed 3xx) is success."""
    if 400 <= status_code < 500:
        return "client_error"
    if status_code >= 500:
        return "server_error"
    return "success"


@dataclass(frozen=True)
class Reply:
    """A response read within the limits: status, headers and the (decoded) body bytes."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    encoding: str

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")


def decode_body(reply: Reply) -> Any:
    """JSON-decoded when the response says it is JSON (falling back to text if it is not), else text."""
    if "json" in reply.headers.get("content-type", "").lower():
        try:
            return json.loads(reply.content)
        except ValueError:
            return reply.text
    return reply.text


class ResponseTooLarge(PermanentNodeError):
    type = "response_too_large"


def _read_capped(response: httpx.Response, limit: int, deadline: float, timeout: float) -> bytes:
    # Counted after decompression: the limit is about the worker's memory, not the bytes on the wire.
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(
                f"response body over the limit of {limit} bytes ({_mib(limit)}FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES)"
            )
        # The client's timeout bounds each read; this bounds the whole body against a trickling server.
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"body not received within {timeout:g}s")
        chunks.append(chunk)
    return b"".join(chunks)


def _mib(size: int) -> str:
    return f"{size / 1048576:g} MiB, " if size >= 1048576 else ""


def send(
    method: str, url: str, kwargs: dict[str, Any], *, timeout: float, follow: bool = True, label: str = ""
) -> Reply:
    """One HTTP request under the egress policy (every connection of every hop vetted, at most
    FLOWRUNNER_HTTP_MAX_REDIRECTS redirects, a body of at most FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES), its
    failures mapped to node errors: a refused address, an oversized body, too many redirects or a malformed
    URL are permanent; no answer in time → timeout; a connection failure → retryable under the node's retry
    policy."""
    what = f"{label}{method} {url}"
    policy = EgressPolicy.from_settings()
    deadline = time.monotonic() + timeout
    client = httpx.Client(
        transport=PinnedTransport(policy),
        timeout=timeout,
        follow_redirects=follow,
        max_redirects=policy.max_redirects,
        trust_env=False,  # no proxy from the environment: it would resolve and connect past the policy
    )
    try:
        with client, client.stream(method, url, **kwargs) as response:
            content = _read_capped(response, policy.max_response_bytes, deadline, timeout)
            return Reply(response.status_code, response.headers, content, response.encoding or "utf-8")
    except EgressRefused as exc:
        hop = "" if exc.host == _host_of(url) else f"a redirect to {exc.host}: "
        raise EgressRefused(f"{what}: {hop}{exc.message}", host=exc.host)
    except ResponseTooLarge as exc:
        raise ResponseTooLarge(f"{what}: {exc.message}")
    except httpx.TooManyRedirects:
        raise PermanentNodeError(
            f"{what}: more than {policy.max_redirects} redirects (FLOWRUNNER_HTTP_MAX_REDIRECTS)",
            type="too_many_redirects",
        )
    except httpx.TimeoutException:
        raise NodeTimeoutError(f"{what}: no response within {timeout:g}s")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise PermanentNodeError(f"{what}: invalid URL: {exc}")
    except httpx.HTTPError as exc:
        # Connection refused, DNS failure, reset: worth retrying under the node's retry policy.
        raise NodeError(f"{what}: {exc.__class__.__name__}: {exc}", type="connection_error")


def _host_of(url: str) -> str | None:
    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, TypeError):
        return None


def request_target(params: dict[str, Any], *, default_method: str) -> tuple[str, str]:
    """(url, upper-case method) of rendered params, as the HTTP kinds send them; a bad method fails the node."""
    url = run_string(params.get("url"), "url")
    method = (run_string(params.get("method"), "method", required=False) or default_method).upper()
    if method not in METHODS:
        raise PermanentNodeError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return url, method


def request_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """httpx keyword arguments for `headers`, `query`, `body` and `auth` of rendered params."""
    kwargs: dict[str, Any] = {}
    headers = {str(k): _scalar_text(v) for k, v in run_mapping(params.get("headers"), "headers").items()}
    query = run_mapping(params.get("query"), "query")
    if query:
        kwargs["params"] = {
            str(k): [_scalar_text(item) for item in v] if isinstance(v, list) else _scalar_text(v)
            for k, v in query.items()
        }
    body = params.get("body")
    if isinstance(body, str):
        kwargs["content"] = body
    elif body is not None:
        # A map or list (or a bare number/boolean) goes out as JSON; httpx sets Content-Type unless given.
        kwargs["json"] = body
    auth = run_mapping(params.get("auth"), "auth")
    if auth:
        auth_type = str(auth.get("type", "")).lower()
        if auth_type == "basic":
            kwargs["auth"] = (str(auth.get("username") or ""), str(auth.get("password") or ""))
        elif auth_type == "bearer":
            headers["Authorization"] = f"Bearer {auth.get('token') or ''}"
        else:
            raise PermanentNodeError(f"auth.type must be one of {', '.join(AUTH_TYPES)}, got {auth_type!r}")
    kwargs["headers"] = headers
    return kwargs


class HttpRequestKind(NodeKind):
    name = "http.request"

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow("url", "method", "headers", "query", "body", "auth", "follow_redirects")
        url = check.string("url", required=True)
        if url is not None and not is_expression(url) and not url.lower().startswith(("http://", "https://")):
            report("url", f"'url' must be an absolute http:// or https:// URL, got '{url}'")
        check.choice("method", METHODS, upper=True)
        for name in ("headers", "query"):
            for key, value in (check.mapping(name) or {}).items():
                allowed = (str, int, float, bool, list) if name == "query" else (str, int, float, bool)
                if not isinstance(value, allowed):
                    report(
                        f"{name}.{key}", f"'{name}.{key}' must be text or a number, got {type_name(value)}"
                    )
        check.boolean("follow_redirects")
        auth = check.mapping("auth")
        if auth is not None:
            self._validate_auth(auth, report)

    @staticmethod
    def _validate_auth(auth: dict[str, Any], report: Report) -> None:
        for key in auth:
            if key not in ("type", "username", "password", "token"):
                report(f"auth.{key}", f"unknown key '{key}' (expected type, username, password, token)")
        auth_type = auth.get("type")
        if auth_type is None:
            report("auth", "missing 'auth.type' (basic or bearer)")
            return
        if is_expression(auth_type):
            return
        if auth_type not in AUTH_TYPES:
            report("auth.type", f"'auth.type' must be one of {', '.join(AUTH_TYPES)}, got {auth_type!r}")
            return
        needed = ("username", "password") if auth_type == "basic" else ("token",)
        for key in needed:
            value = auth.get(key)
            if value is None:
                report("auth", f"{auth_type} auth needs 'auth.{key}'")
            elif not isinstance(value, str) and not is_number(value):
                report(f"auth.{key}", f"'auth.{key}' must be a string, got {type_name(value)}")

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.render(ctx.node.params)
        url, method = request_target(params, default_method="GET")
        kwargs = request_kwargs(params)
        follow = params.get("follow_redirects", True) is not False
        response = send(method, url, kwargs, timeout=ctx.timeout or DEFAULT_TIMEOUT, follow=follow)
        output = {
            "status_code": response.status_code,
            "headers": dict(response.headers.items()),
            "body": decode_body(response),
            "success": 200 <= response.status_code < 300,
        }
        return NodeResult(output=output, action=status_action(response.status_code))


register(HttpRequestKind())
