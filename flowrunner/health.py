"""`GET /api/v1/health`: a cached status for anyone; database, broker and worker count for staff or the health token."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import authentication, exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import BearerTokenAuthentication, CachedBasicAuthentication
from core.authorization import bearer_matches
from flowrunner.celery import app

logger = logging.getLogger(__name__)

# How long one process reuses the anonymous answer: a load balancer polling every second, or anyone calling
# in a loop, costs one database query and one broker connection per process per period, and no worker ping.
STATUS_TTL = 5.0


# How long the database probe waits for a connection: PostgreSQL being down must show within about a second,
# whatever FLOWRUNNER_POSTGRES_POOL_TIMEOUT says.
DATABASE_WAIT = 1.0


def _database_ok() -> bool:
    pool = connection.pool
    try:
        if pool is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        pool.open()  # a no-op once open; the first probe of a process may come before any query
        conn = pool.getconn(timeout=DATABASE_WAIT)
        try:
            conn.execute("SELECT 1")
        finally:
            pool.putconn(conn)
        return True
    except Exception as exc:
        logger.warning("health: the database does not answer: %s", exc)
        return False


def _broker_ok() -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


def _workers() -> int:
    """Workers answering a ping: a broadcast every worker must answer, so only for those allowed details."""
    try:
        return len(app.control.ping(timeout=0.5) or [])
    except Exception:
        return 0


def _status(database: bool, broker: bool) -> tuple[str, int]:
    return ("ok" if database and broker else "degraded"), (200 if database else 503)


class TimedValue:
    """A value computed at most once per `ttl` seconds, however many threads ask at once."""

    def __init__(self, compute: Callable[[], object], ttl: float) -> None:
        self._compute, self._ttl = compute, ttl
        self._lock = threading.Lock()
        self._value: object = None
        self._expires = 0.0

    def get(self) -> object:
        with self._lock:
            if time.monotonic() >= self._expires:
                self._value = self._compute()
                self._expires = time.monotonic() + self._ttl
            return self._value

    def forget(self) -> None:
        with self._lock:
            self._expires = 0.0


anonymous_status = TimedValue(lambda: _status(_database_ok(), _broker_ok()), STATUS_TTL)


class HealthToken:
    """`request.auth` of a caller that presented FLOWRUNNER_HEALTH_TOKEN."""


class HealthTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <FLOWRUNNER_HEALTH_TOKEN>`, for monitors that have no user. Any other header is
    left to the API's own classes."""

    def authenticate(self, request: Request):
        header = authentication.get_authorization_header(request)
        if bearer_matches(header, settings.FLOWRUNNER_HEALTH_TOKEN):
            return (AnonymousUser(), HealthToken())
        return None


class HealthTokenScheme(OpenApiAuthenticationExtension):
    target_class = "flowrunner.health.HealthTokenAuthentication"
    name = "healthToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "FLOWRUNNER_HEALTH_TOKEN (GET /health)."}


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """Django's session as such: staff signed in to the admin may have no account, which the API's session
    class requires."""


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "flowrunner.health.StaffSessionAuthentication"
    name = "adminCookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}


def may_see_details(request: Request) -> bool:
    if isinstance(request.auth, HealthToken):
        return True
    return bool(getattr(request.user, "is_staff", False) and request.user.is_active)


class HealthView(APIView):
    authentication_classes = [
        HealthTokenAuthentication,
        BearerTokenAuthentication,
        CachedBasicAuthentication,
        StaffSessionAuthentication,
    ]
    permission_classes = [AllowAny]

    def perform_authentication(self, request: Request) -> None:
        # A health check answers whoever asks: credentials that do not check out (a monitor's stale token, a
        # flow's unrelated bearer) only withhold the details. The failure still counts towards the throttle,
        # whose 429 goes through.
        try:
            super().perform_authentication(request)
        except exceptions.AuthenticationFailed:
            pass  # DRF has already made the request anonymous

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {
                "status": serializers.CharField(help_text="ok, or degraded when the broker is unreachable"),
                "database": serializers.CharField(required=False, help_text="staff or health token only"),
                "broker": serializers.CharField(required=False, help_text="staff or health token only"),
                "workers": serializers.IntegerField(required=False, help_text="staff or health token only"),
            },
        ),
        description="Anyone: `{status}`, computed at most once every few seconds per server process; 503 when "
        "the database is unreachable. Staff users and callers presenting FLOWRUNNER_HEALTH_TOKEN as a bearer "
        "token also get `database`, `broker` and `workers` (workers answering a ping), computed afresh. "
        "Credentials that do not check out are answered as anonymous.",
    )
    def get(self, request: Request) -> Response:
        if not may_see_details(request):
            status, code = anonymous_status.get()
            return Response({"status": status}, status=code)
        database, broker = _database_ok(), _broker_ok()
        status, code = _status(database, broker)
        return Response(
            {
                "status": status,
                "database": "ok" if database else "unavailable",
                "broker": "ok" if broker else "unavailable",
                "workers": _workers() if broker else 0,
            },
            status=code,
        )
