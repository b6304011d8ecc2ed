"""Schemathesis hooks (SCHEMATHESIS_HOOKS): every error response must be FlowRunner's JSON error envelope."""

from __future__ import annotations

import json

import schemathesis


def _content_type(response) -> str:
    # Schemathesis gives response headers lowercased, each a list of values.
    values = response.headers.get("content-type") or [""]
    return values[0] if isinstance(values, list) else str(values)


def _daphne_multipart_refusal(response) -> bool:
    """Twisted (under daphne) parses every multipart/form-data POST itself and answers a malformed one with a
    bare 400 before the request reaches Django: not the application's to shape (docs/security.md)."""
    request_type = response.request.headers.get("Content-Type") or ""
    return (
        response.status_code == 400
        and request_type.startswith("multipart/form-data")
        and not response.content
        and not _content_type(response)
    )


@schemathesis.check
def error_envelope(ctx, response, case) -> None:
    """A 4xx/5xx answer is `{"error": {"code": str, "message": str, "details": ...}}` and nothing else."""
    if response.status_code < 400 or _daphne_multipart_refusal(response):
        return
    content_type = _content_type(response)
    if not content_type.startswith("application/json"):
        raise AssertionError(f"{response.status_code} answered with Content-Type {content_type!r}, not JSON")
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} body is not JSON: {exc}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(error, dict)):
        raise AssertionError(f"{response.status_code} body is not the error envelope: {body!r:.300}")
    if set(error) != {"code", "message", "details"}:
        raise AssertionError(f"error envelope has keys {sorted(error)}, expected code, message, details")
    if not isinstance(error["code"], str) or not error["code"]:
        raise AssertionError(f"error.code is not a non-empty string: {error['code']!r}")
    if not isinstance(error["message"], str):
        raise AssertionError(f"error.message is not a string: {error['message']!r}")
