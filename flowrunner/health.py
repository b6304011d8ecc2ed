"""`GET /api/v1/health`: database, broker and worker reachability, no auth."""

from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _broker_and_workers() -> tuple[bool, int]:
    from flowrunner.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return False, 0
    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception:
        replies = []
    return True, len(replies)


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {
                "status": serializers.CharField(),
                "database": serializers.CharField(),
                "broker": serializers.CharField(),
                "workers": serializers.IntegerField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        database = _database_ok()
        broker, workers = _broker_and_workers()
        return Response(
            {
                "status": "ok" if database and broker else "degraded",
                "database": "ok" if database else "unavailable",
                "broker": "ok" if broker else "unavailable",
                "workers": workers,
            },
            status=200 if database else 503,
        )
