"""Rate limit on failed logins and failed authentications, per username and per client IP (Django cache)."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from core.errors import TooManyAttempts

logger = logging.getLogger(__name__)

_PREFIX = "fr:authfail"

T = TypeVar("T")


def failure_limit() -> int:
    """Failures allowed per window before further attempts answer 429."""
    return int(getattr(settings, "FLOWRUNNER_AUTH_FAILURE_LIMIT", 10))


def failure_window() -> float:
    return float(getattr(settings, "FLOWRUNNER_AUTH_FAILURE_WINDOW", 60))


def client_ip(request: HttpRequest) -> str:
    """The peer address. X-Forwarded-For is ignored on purpose: trusting it would let anyone pick their IP."""
    meta = getattr(request, "META", None) or {}
    return meta.get("REMOTE_ADDR") or "unknown"


def _keys(*, username: str | None, ip: str | None) -> list[str]:
    # Hash the identifiers: arbitrary usernames make arbitrary cache keys otherwise.
    keys = []
    if username is not None:
        keys.append(f"{_PREFIX}:user:{hashlib.sha256(username.lower().encode()).hexdigest()}")
    if ip is not None:
        keys.append(f"{_PREFIX}:ip:{hashlib.sha256(ip.encode()).hexdigest()}")
    return keys


def check(*, username: str | None = None, ip: str | None = None) -> None:
    """Raise TooManyAttempts (429) if the username or the IP has used up its failures for the current window."""
    keys = _keys(username=username, ip=ip)
    try:
        counts = cache.get_many([*keys, *(f"{key}:start" for key in keys)])
    except Exception:
        # A cache outage must not lock everybody out; the password hash is still the real gate.
        logger.warning("auth throttle: cache unavailable, not throttling", exc_info=True)
        return
    limit = failure_limit()
    for key in keys:
        if int(counts.get(key) or 0) >= limit:
            started = counts.get(f"{key}:start") or time.time()
            wait = max(1, math.ceil(started + failure_window() - time.time()))
            raise TooManyAttempts(
                "Too many failed authentication attempts; try again later.", retry_after=wait
            )


def record_failure(*, username: str | None = None, ip: str | None = None) -> None:
    """Count one failed attempt against the username and the IP (a fixed window from the first failure)."""
    window = max(1, math.ceil(failure_window()))
    try:
        for key in _keys(username=username, ip=ip):
            if cache.add(key, 0, timeout=window):
                cache.set(f"{key}:start", time.time(), timeout=window)
            try:
                cache.incr(key)
            except ValueError:
                # The window expired between add() and incr(): start a new one.
                cache.set(key, 1, timeout=window)
    except Exception:
        logger.warning("auth throttle: cache unavailable, failure not counted", exc_info=True)


def reset(*, username: str | None) -> None:
    """Forget a username's failures after it authenticated; IP counters stay so one valid account cannot
    reset the counter an attacker spends on others."""
    try:
        cache.delete_many(
            [f"{key}{suffix}" for key in _keys(username=username, ip=None) for suffix in ("", ":start")]
        )
    except Exception:
        logger.warning("auth throttle: cache unavailable, failures not reset", exc_info=True)


def guarded_login(
    attempt: Callable[[], T],
    *,
    username: str | None,
    ip: str | None,
    failure: type[Exception] | tuple[type[Exception], ...],
) -> T:
    """One password attempt under the failed-login throttle: TooManyAttempts (429) before trying while the
    username or the IP has used up its failures; `attempt` raising `failure` counts against both; any other
    exception passes through uncounted, and a success forgets the username's failures."""
    check(username=username, ip=ip)
    try:
        result = attempt()
    except failure:
        record_failure(username=username, ip=ip)
        raise
    reset(username=username)
    return result
