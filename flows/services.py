"""Writes of flows: create, new version, soft delete — each in one transaction."""

from __future__ import annotations

import secrets
import string

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Account
from core.errors import NotFound
from flows.dsl.parser import parse_flow
from flows.dsl.spec import FlowSpec, FlowValidationError, Problem
from flows.models import Flow, FlowVersion

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_SUFFIX_LENGTH = 6
_SLUG_LENGTH = 60

# Column sizes of the models, checked here so an over-long metadata value is a 400, not a database error.
_NAME_MAX = Flow._meta.get_field("name").max_length
_LABEL_MAX = FlowVersion._meta.get_field("version").max_length


def flow_parse(*, content: str, name: str | None = None) -> FlowSpec:
    """Parse and validate a flow text (plus the storage limits); raises FlowValidationError."""
    spec = parse_flow(content)
    problems = []
    if name is None and len(spec.name) > _NAME_MAX:
        problems.append(Problem("metadata.name", None, None, f"must be at most {_NAME_MAX} characters"))
    if spec.version is not None and len(spec.version) > _LABEL_MAX:
        problems.append(Problem("metadata.version", None, None, f"must be at most {_LABEL_MAX} characters"))
    if problems:
        raise FlowValidationError(problems)
    return spec


def _new_flow_id(name: str) -> str:
    slug = slugify(name)[:_SLUG_LENGTH].strip("-") or "flow"
    while True:
        suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(_SUFFIX_LENGTH))
        flow_id = f"{slug}-{suffix}"
        # 36^6 suffixes make a clash very unlikely, but a clash must never overwrite another flow.
        if not Flow.objects.filter(pk=flow_id).exists():
            return flow_id


def _add_version(*, flow: Flow, number: int, user, content: str, spec: FlowSpec) -> FlowVersion:
    version = FlowVersion.objects.create(
        flow=flow,
        number=number,
        version=spec.version or str(number),
        content=content,
        spec=spec.to_json(),
        created_by=user,
    )
    flow.current_version = version
    flow.description = spec.description or ""
    return version


@transaction.atomic
def flow_create(*, account: Account, user, content: str, name: str | None = None) -> Flow:
    """Create a flow and its version 1 from YAML text; `name` overrides `metadata.name`.

    The id is the slug of the name plus six random lowercase letters/digits. Raises FlowValidationError.
    """
    spec = flow_parse(content=content, name=name)
    flow_name = name or spec.name
    flow = Flow.objects.create(
        id=_new_flow_id(flow_name),
        account=account,
        name=flow_name,
        description=spec.description or "",
    )
    _add_version(flow=flow, number=1, user=user, content=content, spec=spec)
    flow.save(update_fields=["current_version", "description", "updated_at"])
    return flow


@transaction.atomic
def flow_update(*, flow: Flow, user, content: str, name: str | None = None) -> Flow:
    """Make `content` the flow's new current version (number + 1) and return the refreshed flow.

    Content identical to the current version's creates no version: only a changed `name` is applied. Without
    `name`, a flow whose name came from `metadata.name` follows the new `metadata.name`; a name chosen
    explicitly is kept. Raises FlowValidationError, or NotFound for a deleted flow.
    """
    # The row lock serialises concurrent updates, so version numbers stay gapless and unique.
    locked = Flow.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=flow.pk)
    if locked.deleted_at is not None:
        raise NotFound()
    current = locked.current_version
    if current is not None and current.content == content:
        if name and name != locked.name:
            locked.name = name
            locked.save(update_fields=["name", "updated_at"])
        return locked
    spec = flow_parse(content=content, name=name)
    if name:
        locked.name = name
    elif current is not None and locked.name == current.spec.get("name"):
        locked.name = spec.name
    latest = locked.versions.aggregate(latest=Max("number"))["latest"] or 0
    _add_version(flow=locked, number=latest + 1, user=user, content=content, spec=spec)
    locked.save(update_fields=["name", "description", "current_version", "updated_at"])
    return locked


@transaction.atomic
def flow_delete(*, flow: Flow) -> None:
    """Soft delete: the flow disappears from the API and refuses new runs; its versions and runs stay."""
    Flow.objects.filter(pk=flow.pk, deleted_at__isnull=True).update(
        deleted_at=timezone.now(), updated_at=timezone.now()
    )
    flow.refresh_from_db(fields=["deleted_at", "updated_at"])
