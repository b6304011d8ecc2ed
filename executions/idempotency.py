"""`Idempotency-Key` of a run request: scoped to (account, flow), bound to the input, expiring after a TTL."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import Account
from core.errors import Unprocessable
from executions.models import Execution
from flows.models import Flow


class IdempotencyKeyReused(Unprocessable):
    """422, as payment APIs answer: the key already started a run with another body, which a retry of the same
    request never has, so the caller is about to lose a run it meant to start."""

    default_code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used for a run of this flow with a different input."


def key_digest(*, flow: Flow, key: str) -> str:
    """What the execution stores for `key`: the column is unique per account, so the flow goes into the value
    (a digest keeps any key of up to 200 characters, plus the flow id, within the column)."""
    return hashlib.sha256(f"{len(flow.id)}:{flow.id}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(value: Any) -> str:
    # Key order is not meaningful in JSON (PostgreSQL's jsonb reorders keys); `true` and `1` are different.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def execution_for_key(*, account: Account, digest: str, input: dict[str, Any]) -> Execution | None:
    """The execution an earlier request with this key started, if it has not expired; None when the key is new
    or expired (an expired key is released, so it can start a new run). A live key with a different input →
    IdempotencyKeyReused."""
    existing = Execution.objects.filter(account=account, idempotency_key=digest).first()
    if existing is None:
        return None
    expires = existing.created_at + timedelta(seconds=settings.FLOWRUNNER_IDEMPOTENCY_TTL)
    if expires <= timezone.now():
        Execution.objects.filter(pk=existing.pk, idempotency_key=digest).update(idempotency_key=None)
        return None
    if _canonical(existing.input) != _canonical(input):
        raise IdempotencyKeyReused(
            f"This Idempotency-Key was already used for a run of this flow with a different input (execution "
            f"{existing.id}); send the same input to get that execution back, or use a new key for a new run.",
            details={"execution_id": str(existing.id)},
        )
    return existing
