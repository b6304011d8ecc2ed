"""Security headers for dashboard responses only (the API and admin keep their own): CSP without inline code."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from core.errors import NotFound


def content_security_policy(request: HttpRequest) -> str:
    """No inline script or style anywhere: every script and stylesheet is a static file of this origin.

    The WebSocket origin is named explicitly: older browsers do not let 'self' cover ws:/wss:.
    """
    host = request.get_host()
    scheme = "wss" if request.is_secure() else "ws"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {scheme}://{host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def apply_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = content_security_policy(request)
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "same-origin"
    response["X-Frame-Options"] = "DENY"
    response["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    # Pages show tenant data; a shared proxy or the back button of a logged-out browser must not keep them.
    response.setdefault("Cache-Control", "no-store")
    return response


def not_found_page(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/404.html", status=404)


def secure_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Decorate a dashboard view: security headers on every answer, and a styled 404 (with the same headers)
    for a missing object or another account's, which the selectors report as not found."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except (Http404, NotFound):
            response = not_found_page(request)
        return apply_headers(request, response)

    return wrapper
