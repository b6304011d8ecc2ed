"""Reads of flows, always scoped to an account; what is derived from a flow version cached in memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from django.db.models import QuerySet

from accounts.models import Account
from core.errors import NotFound
from flows.dsl.spec import FlowSpec
from flows.models import Flow, FlowVersion

SPEC_CACHE_SIZE = 512
LABEL_CACHE_SIZE = 4096

T = TypeVar("T")


class VersionCache(Generic[T]):
    """A per-process LRU of values derived from flow versions. FlowVersions are never modified, so an entry
    never goes stale; only a database reset (tests) reuses an id, and flow_version_caches_clear() empties
    every such cache at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        # Celery's thread pool and daphne's executor threads share the caches.
        self._lock = threading.Lock()
        _caches.append(self)

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value of `key`, computed (outside the lock) on a miss."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_caches: list[VersionCache[Any]] = []
_specs: VersionCache[FlowSpec] = VersionCache(SPEC_CACHE_SIZE)
_labels: VersionCache[str] = VersionCache(LABEL_CACHE_SIZE)


def flow_list(*, account: Account) -> QuerySet[Flow]:
    """The account's flows that are not deleted, newest first."""
    return (
        Flow.objects.filter(account=account, deleted_at__isnull=True)
        .select_related("current_version")
        .order_by("-created_at", "-id")
    )


def flow_get(*, account: Account, flow_id: str) -> Flow:
    """The account's flow; NotFound alike for a missing, deleted or another account's flow."""
    flow = flow_list(account=account).filter(pk=flow_id).first()
    if flow is None:
        raise NotFound("Flow not found.")
    return flow


def flow_versions(*, flow: Flow) -> QuerySet[FlowVersion]:
    """Every version of the flow, highest number first."""
    return FlowVersion.objects.filter(flow=flow).select_related("created_by").order_by("-number")


def flow_version_spec(version: FlowVersion | int) -> FlowSpec:
    """The parsed spec of a version (an instance or its id), cached by version id; the engine calls this for
    every node."""
    if isinstance(version, int):
        return _specs.get(
            version,
            lambda: FlowSpec.from_json(FlowVersion.objects.values_list("spec", flat=True).get(pk=version)),
        )
    return _specs.get(version.pk, lambda: FlowSpec.from_json(version.spec))


def flow_version_label(version: FlowVersion | int) -> str:
    """The version label (`version` field) of a version (an instance or its id), cached by version id: a
    status snapshot costs no query."""
    if isinstance(version, int):
        return _labels.get(
            version, lambda: FlowVersion.objects.values_list("version", flat=True).get(pk=version)
        )
    return _labels.get(version.pk, lambda: version.version)


def flow_version_caches_clear() -> None:
    """Empty every cache of flow-version data (tests: a database reset reuses version ids)."""
    for cache in _caches:
        cache.clear()
