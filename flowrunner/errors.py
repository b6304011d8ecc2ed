"""Django-level error handlers: API paths get the JSON envelope, never an HTML page or a stack trace."""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from core.api.exceptions import error_response, json_error
from core.api.views import body_too_large


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            # Django reports an over-limit body as a SuspiciousOperation (400); the API documents 413.
            return error_response(body_too_large())
        return json_error(400, "bad_request", "Bad request.")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return json_error(403, "permission_denied", "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return json_error(404, "not_found", "Not found.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return json_error(500, "server_error", "Internal server error.")
    return defaults.server_error(request)
