"""The `http.request` kind: one HTTP call; the status class picks success, client_error or server_error."""

from __future__ import annotations

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


def decode_body(response: httpx.Response) -> Any:
    """JSON-decoded when the response says it is JSON (falling back to text if it is not), else text."""
    if "json" in response.headers.get("content-type", "").lower():
        try:
            return response.json()
        except ValueError:
            return response.text
    return response.text


def send(
    method: str, url: str, kwargs: dict[str, Any], *, timeout: float, follow: bool = True, label: str = ""
) -> httpx.Response:
    """One HTTP request with its failures mapped to node errors: no answer in time → timeout, a malformed URL →
    permanent, a connection failure → retryable under the node's retry policy."""
    what = f"{label}{method} {url}"
    try:
        with httpx.Client(timeout=timeout, follow_redirects=follow) as client:
            return client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise NodeTimeoutError(f"{what}: no response within {timeout:g}s")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise PermanentNodeError(f"{what}: invalid URL: {exc}")
    except httpx.HTTPError as exc:
        # Connection refused, DNS failure, reset: worth retrying under the node's retry policy.
        raise NodeError(f"{what}: {exc.__class__.__name__}: {exc}", type="connection_error")


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
        url = run_string(params.get("url"), "url")
        method = (run_string(params.get("method"), "method", required=False) or "GET").upper()
        if method not in METHODS:
            raise PermanentNodeError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
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
