"""Shared fixtures: two accounts with a user each, and API clients authenticated as them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import Account, Membership

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # Unit tests create many users; production keeps Django's default PBKDF2.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache(request, settings):
    # Throttle counters and the Basic-auth cache live in the cache; one test must not throttle the next.
    # Unit tests get a private in-memory cache: clearing the Redis one would also flush the broker that the
    # integration tests' live stack shares.
    if request.node.get_closest_marker("integration") is None:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        from django.core.cache import cache

        cache.clear()
    yield


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


def pytest_configure(config):
    # httpx logs every request at INFO; polling loops would bury a failure's real output.
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
