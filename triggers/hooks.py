"""Inbound hook services: create a trigger (its secret shown once), and receive a delivery.

A delivery is authenticated by `Authorization: Bearer <secret>` or by `X-FlowRunner-Signature: sha256=<hex>`,
the HMAC-SHA256 of the raw body keyed by the secret (GitHub's scheme). With `X-FlowRunner-Timestamp: <unix
seconds>` the signed message is `<timestamp>.<body>` instead (Stripe's scheme) and the timestamp must be within
FLOWRUNNER_HOOK_TOLERANCE of now. Every accepted signature is remembered for FLOWRUNNER_HOOK_REPLAY_WINDOW:
the same signed delivery again returns the first execution and starts nothing. A stale timestamp is refused,
so a timestamped delivery cannot be replayed at all; an untimestamped one only after the window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import throttling, vault
from accounts.models import Account
from core import json as json_limits
from core.authorization import bearer_matches
from core.errors import NotAuthenticated, NotFound, TooManyAttempts, ValidationFailed
from executions.callbacks import callback_url_validate
from executions.models import Execution
from executions.services import execution_start
from flows.models import Flow
from triggers.models import HookDelivery, Trigger

logger = logging.getLogger(__name__)

SECRET_PREFIX = "frh_"
SIGNATURE_PREFIX = "sha256="


class HookUnauthorized(NotAuthenticated):
    """401: the delivery does not prove it knows the trigger's secret."""

    default_code = "not_authenticated"
    default_message = "The delivery is not authenticated."


@transaction.atomic
def trigger_create(
    *,
    account: Account,
    flow: Flow,
    user: Any = None,
    name: str = "",
    enabled: bool = True,
    callback_url: str | None = None,
) -> tuple[Trigger, str]:
    """A new inbound hook of the flow. Returns (trigger, secret): the secret is not readable again."""
    if flow.deleted_at is not None:
        raise NotFound()
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    trigger = Trigger.objects.create(
        account=account,
        flow=flow,
        name=name,
        enabled=enabled,
        callback_url=callback_url_validate(callback_url) if callback_url else None,
        secret_ciphertext=vault.encrypt(secret),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    return trigger, secret


@transaction.atomic
def trigger_update(*, trigger: Trigger, enabled: bool) -> Trigger:
    trigger.enabled = enabled
    trigger.save(update_fields=["enabled"])
    return trigger


def trigger_delete(*, trigger: Trigger) -> None:
    trigger.delete()


@dataclass(frozen=True)
class Delivery:
    """What the hook endpoint received, untouched: the HMAC is over the raw bytes."""

    body: bytes
    authorization: str | None = None
    signature: str | None = None
    timestamp: str | None = None
    idempotency_key: str | None = None
    ip: str | None = None


def _enabled_trigger(trigger_id: Any) -> Trigger:
    try:
        key = uuid.UUID(str(trigger_id))
    except (ValueError, TypeError):
        raise NotFound("Trigger not found.")
    trigger = (
        Trigger.objects.select_related("flow", "account")
        .filter(id=key, enabled=True, flow__deleted_at__isnull=True)
        .first()
    )
    if trigger is None:
        raise NotFound("Trigger not found.")
    return trigger


def _unauthorized(message: str, delivery: Delivery) -> HookUnauthorized:
    throttling.record_failure(ip=delivery.ip)
    return HookUnauthorized(message)


def _authenticate(trigger: Trigger, delivery: Delivery) -> str | None:
    """None for a Bearer delivery, else the accepted signature (hex): the key against replays."""
    secret = vault.decrypt(trigger.secret_ciphertext)
    if delivery.signature is not None:
        if not delivery.signature.startswith(SIGNATURE_PREFIX):
            raise _unauthorized("X-FlowRunner-Signature must be `sha256=<hex>`.", delivery)
        given = delivery.signature[len(SIGNATURE_PREFIX) :].strip().lower()
        message = delivery.body
        if delivery.timestamp is not None:
            try:
                stamp = int(delivery.timestamp)
            except ValueError:
                raise _unauthorized("X-FlowRunner-Timestamp must be Unix seconds.", delivery)
            if abs(time.time() - stamp) > settings.FLOWRUNNER_HOOK_TOLERANCE:
                raise _unauthorized("X-FlowRunner-Timestamp is too far from now.", delivery)
            message = f"{stamp}.".encode() + delivery.body
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise _unauthorized("The signature does not match the body.", delivery)
        return expected
    if bearer_matches(delivery.authorization, secret):
        return None
    raise _unauthorized(
        "Authenticate with `Authorization: Bearer <secret>` or `X-FlowRunner-Signature: sha256=<hex>`.",
        delivery,
    )


def _rate_limit(trigger: Trigger) -> None:
    """A fixed one-minute window per trigger, counted in the shared cache (Redis across web processes)."""
    limit = settings.FLOWRUNNER_HOOK_RATE_LIMIT
    window = math.floor(time.time() / 60)
    key = f"fr:hook:{trigger.id}:{window}"
    try:
        cache.add(key, 0, timeout=120)
        count = cache.incr(key)
    except Exception:
        logger.warning("hook rate limit: cache unavailable, not limiting", exc_info=True)
        return
    if count > limit:
        raise TooManyAttempts(
            "Too many deliveries to this trigger.",
            retry_after=max(1, math.ceil((window + 1) * 60 - time.time())),
        )


def _input(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationFailed(
            "The body is not valid JSON.", details=[{"path": "", "message": str(exc)[:200]}]
        )
    if not isinstance(value, dict):
        raise ValidationFailed(
            "The body must be a JSON object: it becomes the run's input.",
            details=[{"path": "", "message": "expected an object"}],
        )
    problem = json_limits.storable_problem(value)
    if problem is not None:
        raise ValidationFailed(
            "The request body is not valid.", details=[{"path": problem[0], "message": problem[1]}]
        )
    return value


def hook_receive(*, trigger_id: Any, delivery: Delivery) -> tuple[Execution, bool]:
    """Authenticate a delivery and start its run. Returns (execution, created): a replayed signed delivery or
    a repeated Idempotency-Key gives the first execution back with created False."""
    throttling.check(ip=delivery.ip)
    trigger = _enabled_trigger(trigger_id)
    signature = _authenticate(trigger, delivery)
    key = delivery.idempotency_key
    if key is not None and not (0 < len(key) <= 200):
        raise ValidationFailed("Idempotency-Key must be 1 to 200 characters.")
    if signature is not None:
        seen = _delivered(trigger, signature)
        if seen is not None:
            return seen, False
    _rate_limit(trigger)
    data = _input(delivery.body)
    try:
        with transaction.atomic():
            record = HookDelivery.objects.create(trigger=trigger, signature=signature) if signature else None
            execution, created = execution_start(
                account=trigger.account,
                flow=trigger.flow,
                input=data,
                # Scoped to the trigger: the same key sent to the run endpoint is another request.
                idempotency_key=f"hook:{trigger.id}:{key}" if key else None,
                trigger={"type": "hook", "trigger_id": str(trigger.id)},
                callback_url=trigger.callback_url or None,
            )
            if record is not None:
                record.execution = execution
                record.save(update_fields=["execution"])
            Trigger.objects.filter(id=trigger.id).update(last_fired_at=timezone.now())
    except IntegrityError:
        # The same signed delivery arrived twice at once: the first one's run answers both.
        seen = _delivered(trigger, signature) if signature else None
        if seen is None:
            raise
        return seen, False
    if signature is not None:
        _forget_old_deliveries(trigger)
    return execution, created


def _delivered(trigger: Trigger, signature: str) -> Execution | None:
    record = (
        HookDelivery.objects.select_related("execution").filter(trigger=trigger, signature=signature).first()
    )
    if record is None:
        return None
    expired = record.created_at < timezone.now() - timedelta(seconds=settings.FLOWRUNNER_HOOK_REPLAY_WINDOW)
    if expired or record.execution is None:
        # Forgotten (or its execution deleted): the delivery is new again.
        HookDelivery.objects.filter(id=record.id).delete()
        return None
    return record.execution


def _forget_old_deliveries(trigger: Trigger) -> None:
    cutoff = timezone.now() - timedelta(seconds=settings.FLOWRUNNER_HOOK_REPLAY_WINDOW)
    HookDelivery.objects.filter(trigger=trigger, created_at__lt=cutoff).delete()
