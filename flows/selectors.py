"""Reads of flows, always scoped to an account; parsed specs of versions cached in memory."""

from __future__ import annotations

import threading
from collections import OrderedDict

from django.db.models import QuerySet

from accounts.models import Account
from core.errors import NotFound
from flows.dsl.spec import FlowSpec
from flows.models import Flow, FlowVersion

SPEC_CACHE_SIZE = 512

_spec_cache: OrderedDict[int, FlowSpec] = OrderedDict()
# Celery's thread pool and daphne's executor threads share this module.
_spec_cache_lock = threading.Lock()


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
    """The parsed spec of a version (an instance or its id), from an LRU cache keyed by version id.

    FlowVersions are never modified, so a cached spec never goes stale; the engine calls this for every node.
    """
    version_id = version if isinstance(version, int) else version.pk
    with _spec_cache_lock:
        spec = _spec_cache.get(version_id)
        if spec is not None:
            _spec_cache.move_to_end(version_id)
            return spec
    if isinstance(version, int):
        data = FlowVersion.objects.values_list("spec", flat=True).get(pk=version_id)
    else:
        data = version.spec
    spec = FlowSpec.from_json(data)
    with _spec_cache_lock:
        _spec_cache[version_id] = spec
        _spec_cache.move_to_end(version_id)
        while len(_spec_cache) > SPEC_CACHE_SIZE:
            _spec_cache.popitem(last=False)
    return spec


def flow_version_spec_cache_clear() -> None:
    """Empty the spec cache (tests; a database reset reuses version ids)."""
    with _spec_cache_lock:
        _spec_cache.clear()
