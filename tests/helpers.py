"""Helpers every suite shares: the JSON error envelope, and a Basic Authorization header."""

from __future__ import annotations

import base64
from typing import Any


def basic(username: str, password: str) -> str:
    """The value of a Basic Authorization header."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def assert_envelope(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response (Django test client's or httpx's) is `status` with the JSON error envelope, and `code` when
    given → the error object."""
    content = getattr(response, "text", None) or getattr(response, "content", b"")
    assert response.status_code == status, f"{response.status_code} {content[:500]!r}"
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
