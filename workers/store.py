"""The account-scoped key-value store behind the `store` node kind, in PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from flows.nodes.base import PermanentNodeError
from workers.models import StoreEntry
from workers.storable import storable


class AccountStore:
    """get/set/delete/list/increment scoped to one account; every call is its own short transaction."""

    def __init__(self, account_id: Any, *, masked: Callable[[Any], Any] | None = None) -> None:
        self.account_id = account_id
        # Values are stored as the account's secret values masked: a flow that stores one keeps `***`.
        self.masked = masked or (lambda value: value)

    def get(self, key: str) -> Any:
        return (
            StoreEntry.objects.filter(account_id=self.account_id, key=key)
            .values_list("value", flat=True)
            .first()
        )

    def set(self, key: str, value: Any) -> None:
        StoreEntry.objects.update_or_create(
            account_id=self.account_id, key=key, defaults={"value": storable(self.masked(value))}
        )

    def delete(self, key: str) -> bool:
        deleted, _ = StoreEntry.objects.filter(account_id=self.account_id, key=key).delete()
        return deleted > 0

    def list(self, prefix: str = "") -> dict[str, Any]:
        rows = StoreEntry.objects.filter(account_id=self.account_id, key__startswith=prefix).values_list(
            "key", "value"
        )
        return dict(rows[:10_000])

    def increment(self, key: str, by: float = 1) -> float:
        with transaction.atomic():
            entry, created = StoreEntry.objects.select_for_update().get_or_create(
                account_id=self.account_id, key=key, defaults={"value": by}
            )
            if created:
                return by
            if isinstance(entry.value, bool) or not isinstance(entry.value, int | float):
                raise PermanentNodeError(f"store key {key!r} does not hold a number")
            entry.value = entry.value + by
            entry.save(update_fields=["value", "updated_at"])
            return entry.value
