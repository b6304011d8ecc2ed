"""Fixtures of the security tests: the integration harness's live stack (shared when already running)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration import conftest as integration
from tests.integration.harness import LiveStack

# The integration harness's fixtures, for this directory too (a non-root conftest cannot use pytest_plugins).
live_database = integration.live_database
live_db = integration.live_db
make_live_user = integration.make_live_user
live_user = integration.live_user
live_api = integration.live_api
stack = integration.stack

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents and "live_stack" in item.fixturenames:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def live_stack(
    request: pytest.FixtureRequest, live_database, django_db_blocker, tmp_path_factory
) -> Iterator[LiveStack]:
    """The stack tests/integration started in this session if there is one, else one of our own."""
    yield from integration.own_stack(
        request, tmp_path_factory, "security-stack", {"workers": 1, "beat": True}, reuse=True
    )


def forget_auth_failures(live_stack: LiveStack) -> None:
    """Drop the failed-authentication counters (every test talks from 127.0.0.1; one must not block the
    next). Only the throttle's own keys, in the stack's own Redis db."""
    client = redis.Redis.from_url(live_stack.env["FLOWRUNNER_REDIS_URL"])
    try:
        keys = list(client.scan_iter(match="*fr:authfail*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _auth_failures_forgotten(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "live_stack" in request.fixturenames:
        with contextlib.suppress(redis.RedisError):
            forget_auth_failures(request.getfixturevalue("live_stack"))
