"""Shared fixtures: two accounts with a user each, API clients authenticated as them, and the node tasks the
engine would publish, captured instead of sent to a broker."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Account, Membership

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _clean_cache():
    # Throttle counters and remembered credentials must not leak from one test into the next (the cache is
    # this process's private in-memory one: tests/settings.py).
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def make_member(username: str, account_name: str | None = None):
    account = Account.objects.create(name=account_name or username)
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    Membership.objects.create(user=user, account=account)
    return account, user


@pytest.fixture
def member(db):
    """(account, user) of the caller."""
    return make_member("alice")


@pytest.fixture
def other_member(db):
    """(account, user) of a second, unrelated account."""
    return make_member("mallory")


@pytest.fixture
def api(member) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=member[1])
    return client


@pytest.fixture
def other_api(other_member) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=other_member[1])
    return client


@pytest.fixture
def admin_client(db) -> Client:
    """A Django test client signed in as superuser `root` (pytest-django's own fixture, with our user)."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD))
    return client


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, int, dict]]:
    """Tasks the engine publishes (after commit), captured instead of sent: (task name, node run id, options)."""
    from executions import dispatch

    calls: list[tuple[str, int, dict]] = []
    monkeypatch.setattr(
        dispatch, "send_now", lambda task, node_run_id, **options: calls.append((task, node_run_id, options))
    )
    return calls


@pytest.fixture
def no_broker(monkeypatch) -> None:
    """Node tasks are not enqueued: a stray on-commit send must never reach a broker from a unit test."""
    monkeypatch.setattr("executions.dispatch.send_now", lambda *args, **kwargs: None)


def pytest_configure(config):
    # httpx logs every request at INFO; polling loops would bury a failure's real output.
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def openapi_document(django_db_blocker) -> dict:
    """The OpenAPI document the server publishes (`/api/v1/schema`, JSON)."""
    with django_db_blocker.unblock():
        response = APIClient().get("/api/v1/schema", {"format": "json"})
    assert response.status_code == 200
    return response.json()
