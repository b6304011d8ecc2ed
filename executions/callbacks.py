"""Completion callbacks: a run's `callback_url` is checked when the run is requested and, once the execution
ends, its ExecutionStatus is POSTed there, signed with the account's callback secret."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flowrunner.exceptions import ValidationFailed
from flows.nodes.egress import EgressPolicy

MAX_URL_LENGTH = 2000


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(
        f"`callback_url` {message}.", details=[{"path": "callback_url", "message": message}]
    )


def callback_url_validate(url: object) -> str:
    """The URL as given when it can be a callback: http or https, a host, no credentials, and — when the host
    is an address literal — an address the egress policy allows. Host names are checked when the callback is
    delivered, on every address they resolve to (DNS may answer differently by then)."""
    if not isinstance(url, str) or not url.strip():
        raise _invalid("must be a non-empty string")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks it: a port out of range raises)
    except ValueError as exc:
        raise _invalid(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise _invalid("must be an http or https URL")
    if not parts.hostname:
        raise _invalid("must name a host")
    if parts.username is not None or parts.password is not None:
        raise _invalid("must not carry credentials (the callback is signed instead)")
    if any(ord(char) < 33 for char in url):
        raise _invalid("must not contain spaces or control characters")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    refusal = EgressPolicy.from_settings().refusal(parts.hostname, address)
    if refusal is not None:
        raise _invalid(f"is not allowed: address {address} is {refusal}")
    return url
