"""DRF's EXCEPTION_HANDLER: every error, a domain one or DRF's, answered in the one JSON envelope."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.api.exceptions import CODES, api_exception, error_body
from core.errors import ApplicationError, DatabaseUnavailable, NotFound, PayloadTooLarge

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, OperationalError | InterfaceError):
        # The cause goes to the log; the client learns only that it may retry.
        logger.warning("database unavailable: %s", exc)
        exc = DatabaseUnavailable()
    if isinstance(exc, ApplicationError):
        exc = api_exception(exc)
        if isinstance(exc, exceptions.AuthenticationFailed) and "view" in context:
            # DRF names the scheme only for its own authentication errors; a view's is named the same way.
            exc.auth_header = context["view"].get_authenticate_header(context["request"])
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    error = getattr(exc, "error", None)
    if error is not None:
        body = error_body(error.code, error.message, error.details)
    elif isinstance(exc, exceptions.ValidationError):
        body = error_body("validation_error", "The request is not valid.", _flatten(exc.detail))
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        body = error_body(CODES.get(response.status_code, "error"), str(detail), None)
    response.data = body
    return response


def _flatten(detail: Any, path: str = "") -> list[dict[str, str]]:
    """DRF's nested ValidationError detail as a flat list of {path, message}."""
    if isinstance(detail, dict):
        items: list[dict[str, str]] = []
        for key, value in detail.items():
            items.extend(_flatten(value, f"{path}.{key}" if path else str(key)))
        return items
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [{"path": path, "message": str(item)} for item in detail]
        items = []
        for index, value in enumerate(detail):
            items.extend(_flatten(value, f"{path}[{index}]"))
        return items
    return [{"path": path, "message": str(detail)}]
