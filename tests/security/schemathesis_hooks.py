"""Schemathesis hooks (SCHEMATHESIS_HOOKS): every error response must be FlowRunner's JSON error envelope."""

from __future__ import annotations

import json

import schemathesis


@schemathesis.check
def error_envelope(ctx, response, case) -> None:
    """A 4xx/5xx answer is `{"error": {"code": str, "message": str, "details": ...}}` and nothing else."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("Content-Type") or response.headers.get("content-type") or [""]
    content_type = content_type[0] if isinstance(content_type, list) else content_type
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
