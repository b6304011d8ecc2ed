"""The `Authorization` header, read in one place: its scheme, its credentials, and the check of a fixed token."""

from __future__ import annotations

import hmac


def split_authorization(header: str | bytes | None) -> tuple[str, str | None]:
    """(scheme in lower case, credentials) of an `Authorization` header value. No header (or only white space)
    → ("", None); the credentials are None unless the value is exactly a scheme and one credential."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    parts = (header or "").split()
    if not parts:
        return "", None
    return parts[0].lower(), (parts[1] if len(parts) == 2 else None)


def _sent_bytes(value: str) -> bytes:
    # HTTP servers (WSGI, ASGI, http.server) decode header bytes as latin-1: encoding back gives what was sent.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def bearer_matches(header: str | bytes | None, token: str | None) -> bool:
    """Does the header carry `Bearer <token>` (compared in constant time)? Never with no token configured."""
    if not token:
        return False
    scheme, credentials = split_authorization(header)
    if scheme != "bearer" or credentials is None:
        return False
    return hmac.compare_digest(_sent_bytes(credentials), token.encode())
