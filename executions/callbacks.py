"""Completion callbacks: a run's `callback_url` is checked when the run is requested and, once the execution
ends, its ExecutionStatus is POSTed there, signed with the account's callback secret."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.redaction import Redactor
from accounts.selectors import secret_values
from accounts.services import account_callback_secret
from core.errors import ValidationFailed
from executions import transitions
from executions.models import TERMINAL_EXECUTION_STATUSES, Execution
from executions.selectors import redacted_status
from flows.nodes.egress import EgressPolicy, EgressRefused, PinnedTransport

MAX_URL_LENGTH = 2000
ASCII_SPACE = " \t\n\r\x0b\x0c"


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(
        f"`callback_url` {message}.", details=[{"path": "callback_url", "message": message}]
    )


def callback_url_validate(url: object) -> str:
    """The URL as given when it can be a callback: http or https, a host, no credentials, and — when the host
    is an address literal — an address the egress policy allows. Host names are checked when the callback is
    delivered, on every address they resolve to (DNS may answer differently by then)."""
    # Only ASCII spaces are trimmed: str.strip() would also take a C1 control (U+0085) off the ends, and the URL
    # left would then pass where the published pattern refuses the one given.
    if not isinstance(url, str) or not url.strip(ASCII_SPACE):
        raise _invalid("must be a non-empty string")
    url = url.strip(ASCII_SPACE)
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
    if any(ord(char) < 33 or 0x7F <= ord(char) <= 0x9F for char in url):
        raise _invalid("must not contain spaces or control characters")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    refusal = EgressPolicy.from_settings().refusal(parts.hostname, address)
    if refusal is not None:
        raise _invalid(f"is not allowed: address {address} is {refusal}")
    return url


# --- delivery -----------------------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-FlowRunner-Signature"
MAX_RETRY_WAIT = 3600.0


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the raw body keyed by the secret (GitHub's webhook scheme)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def retry_wait(attempt: int) -> float:
    """The wait after failed attempt `attempt` (1-based): FLOWRUNNER_CALLBACK_RETRY_WAIT doubled each time."""
    return min(MAX_RETRY_WAIT, settings.FLOWRUNNER_CALLBACK_RETRY_WAIT * 2 ** (attempt - 1))


def shown_url(url: str) -> str:
    """The URL as logs show it: without its query or fragment, where callers put tokens."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass
class Attempt:
    delivered: bool
    retry_in: float | None  # when another attempt is due: after this many seconds


def _claim(execution_id: Any, attempt: int) -> Execution | None:
    """Attempt `attempt` is this task's alone (a duplicated message finds it taken): the count moves from
    attempt - 1 to attempt, only while undelivered."""
    moved = (
        Execution.objects.filter(
            id=execution_id,
            callback_attempts=attempt - 1,
            callback_delivered_at__isnull=True,
            status__in=TERMINAL_EXECUTION_STATUSES,
        )
        .exclude(callback_url="")
        .update(callback_attempts=attempt)
    )
    if not moved:
        return None
    return Execution.objects.select_related("account", "flow_version").get(id=execution_id)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[bool, bool, str, int | None]:
    """(delivered, worth retrying, what happened, status code): one POST through the egress policy, no
    redirects followed, the answer's body not read."""
    policy = EgressPolicy.from_settings()
    try:
        with httpx.Client(
            transport=PinnedTransport(policy),
            timeout=settings.FLOWRUNNER_CALLBACK_TIMEOUT,
            follow_redirects=False,
        ) as client:
            with client.stream("POST", url, content=body, headers=headers) as response:
                code = response.status_code
    except EgressRefused as exc:
        return False, False, str(exc), None
    except httpx.TimeoutException:
        return False, True, f"no answer within {settings.FLOWRUNNER_CALLBACK_TIMEOUT:g}s", None
    except httpx.HTTPError as exc:
        return False, True, f"{type(exc).__name__}: {exc}", None
    if 200 <= code < 300:
        return True, False, f"HTTP {code}", code
    return False, True, f"HTTP {code}", code


def callback_deliver(*, execution_id: Any, attempt: int) -> Attempt:
    """Make attempt `attempt` of the execution's callback: POST its ExecutionStatus (the GET's, secrets
    masked), signed with the account's callback secret, and record the attempt on the execution's log.
    Safe to run twice: a second run of one attempt does nothing."""
    execution = _claim(execution_id, attempt)
    if execution is None:
        return Attempt(delivered=False, retry_in=None)
    status = redacted_status(execution)
    body = json.dumps(status, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "FlowRunner-Callback",
        SIGNATURE_HEADER: sign(body, account_callback_secret(account=execution.account)),
        "X-FlowRunner-Execution": str(execution.id),
        "X-FlowRunner-Attempt": str(attempt),
    }
    delivered, retryable, what, code = _post(execution.callback_url, body, headers)
    limit = settings.FLOWRUNNER_CALLBACK_MAX_ATTEMPTS
    retry_in = retry_wait(attempt) if not delivered and retryable and attempt < limit else None
    target = shown_url(execution.callback_url)
    if delivered:
        level, message = "info", f"callback delivered to {target} (attempt {attempt}): {what}"
    elif retry_in is not None:
        level = "warning"
        message = f"callback to {target} failed (attempt {attempt} of {limit}): {what}; next in {retry_in:g}s"
    else:
        level = "error"
        message = f"callback to {target} failed (attempt {attempt} of {limit}): {what}; giving up"
    message = Redactor(secret_values(account=execution.account_id)).text(message)
    with transaction.atomic():
        if delivered:
            Execution.objects.filter(id=execution.id).update(callback_delivered_at=timezone.now())
        transitions.record_log(
            execution_id=execution.id,
            account_id=execution.account_id,
            node_id="",
            level=level,
            message=message,
            data={
                "callback": {"url": target, "attempt": attempt, "status_code": code, "delivered": delivered}
            },
        )
    return Attempt(delivered=delivered, retry_in=retry_in)
