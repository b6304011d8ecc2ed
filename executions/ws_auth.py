"""WebSocket handshake guard: Origin check, then Basic/Bearer or session; refused before the upgrade."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.auth import get_user
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from accounts.credentials import user_for_authorization
from accounts.selectors import member_account_id
from core.authorization import split_authorization
from core.errors import ApplicationError
from executions.ws_selectors import ws_database_sync_to_async

logger = logging.getLogger(__name__)

_ORIGIN_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_HEADER_SCHEMES = frozenset({"basic", "bearer"})


def _headers(scope: dict[str, Any], name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", []) if key.lower() == name]


def client_ip(scope: dict[str, Any]) -> str:
    """The peer address, as accounts.throttling.client_ip does for HTTP (X-Forwarded-For is not trusted)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def origin_allowed(origin: bytes) -> bool:
    """Whether an Origin header names one of ALLOWED_HOSTS (same matching as Django's Host validation)."""
    try:
        parsed = urlsplit(origin.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return False
    if parsed.scheme.lower() not in _ORIGIN_SCHEMES or not parsed.netloc:
        return False
    domain, _port = split_domain_port(parsed.netloc)
    if not domain:
        return False
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        # Django's own fallback for an empty ALLOWED_HOSTS in development.
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return validate_host(domain, allowed)


def handshake_origin_ok(scope: dict[str, Any]) -> bool:
    """No Origin (a program, not a browser) is fine; every Origin given must be an allowed host."""
    return all(origin_allowed(origin) for origin in _headers(scope, b"origin"))


def _user_for_header_sync(header: bytes, ip: str) -> tuple[Any, Any] | None:
    """(user, account_id) for a Basic/Bearer header, or None when it is wrong or throttled.

    The account id is read here, in the sync thread, so the async side never touches a lazy relation.
    """
    try:
        user = user_for_authorization(header, client_ip=ip)
    except ApplicationError as exc:  # wrong credentials (401), throttled (429), no account (403): all refuse
        logger.info("websocket handshake refused from %s: %s", ip, exc.message)
        return None
    if user is None:
        return None
    return user, member_account_id(user)


def _account_of_sync(user: Any) -> Any:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    return member_account_id(user)


user_for_header = ws_database_sync_to_async(_user_for_header_sync)
account_of = ws_database_sync_to_async(_account_of_sync)


class WebsocketAuthMiddleware:
    """Sets scope["user"] and scope["account_id"], or refuses the handshake (daphne answers 403).

    An Authorization header with the Basic or Bearer scheme is decisive (wrong credentials are refused even if
    a session cookie is also sent, as in the REST API); otherwise the Django session decides.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("WebsocketAuthMiddleware only serves WebSocket connections")
        scope = dict(scope)
        identity = None
        if handshake_origin_ok(scope):
            identity = await self._identify(scope)
        else:
            logger.info("websocket handshake refused from %s: origin not allowed", client_ip(scope))
        if identity is None:
            return await WebsocketDenier.as_asgi()(scope, receive, send)
        scope["user"], scope["account_id"] = identity
        return await self.inner(scope, receive, send)

    async def _identify(self, scope: dict[str, Any]) -> tuple[Any, Any] | None:
        headers = _headers(scope, b"authorization")
        if len(headers) > 1:
            return None
        if headers:
            if split_authorization(headers[0])[0] in _HEADER_SCHEMES:
                return await user_for_header(headers[0], client_ip(scope))
        user = await get_user(scope)
        account_id = await account_of(user)
        return None if account_id is None else (user, account_id)


def WebsocketAuthStack(inner: Any) -> Any:  # noqa: N802 - named like channels' AuthMiddlewareStack
    """Cookies and session (for browser clients), then the handshake guard, then `inner`."""
    return CookieMiddleware(SessionMiddleware(WebsocketAuthMiddleware(inner)))
