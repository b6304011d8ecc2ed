"""Domain errors as HTTP: the status of each kind, the envelope `{"error": {code, message, details}}`, and the
DRF exception that carries a domain error out of an authenticator."""

# Kept free of rest_framework.views: DRF imports the authentication classes (which use this module) while
# rest_framework.views itself is loading.

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions

from core.errors import (
    ApplicationError,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    TooManyAttempts,
    Unprocessable,
    ValidationFailed,
)

HTTP_STATUS: dict[type[ApplicationError], int] = {
    ValidationFailed: 400,
    NotAuthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unprocessable: 422,
    TooManyAttempts: 429,
    DatabaseUnavailable: 503,
}

# The code of an error DRF or Django raised itself, by its status.
CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "throttled",
    500: "server_error",
    503: "service_unavailable",
}


def http_status(error: ApplicationError) -> int:
    """The status of the nearest kind the error is; a bare ApplicationError is a 400."""
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 400


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def json_error(status_code: int, code: str, message: str, details: Any = None) -> JsonResponse:
    """The envelope for errors answered outside DRF (Django's 400/403/404/500 handlers, middleware)."""
    return JsonResponse(error_body(code, message, details), status=status_code)


def error_response(error: ApplicationError) -> JsonResponse:
    """A domain error answered outside DRF."""
    return json_error(http_status(error), error.code, error.message, error.details)


class DomainAuthenticationFailed(exceptions.AuthenticationFailed):
    """A NotAuthenticated from an authenticator: DRF adds WWW-Authenticate and makes the request anonymous."""


class DomainThrottled(exceptions.Throttled):
    pass


class DomainException(exceptions.APIException):
    pass


def api_exception(error: ApplicationError) -> exceptions.APIException:
    """The DRF exception for a domain error, keeping it as `.error` (DRF's authentication only handles its own
    exceptions: an authenticator raises this one)."""
    if isinstance(error, NotAuthenticated):
        exc: exceptions.APIException = DomainAuthenticationFailed(error.message, code=error.code)
    elif isinstance(error, TooManyAttempts):
        exc = DomainThrottled(wait=error.retry_after, detail=error.message, code=error.code)
    else:
        exc = DomainException(error.message, code=error.code)
        exc.status_code = http_status(error)
        exc.wait = getattr(error, "retry_after", None)
    exc.error = error
    return exc
