"""Users of the live stack: an account and its member, written through the ORM or signed up over HTTP."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.integration.harness import LiveStack


@dataclass(frozen=True)
class Credentials:
    """A user of a fresh account, as a client of the live stack sees it."""

    username: str
    password: str
    account_id: str

    @property
    def auth(self) -> tuple[str, str]:
        """For `httpx` (`auth=creds.auth`)."""
        return (self.username, self.password)

    @property
    def authorization(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    @property
    def headers(self) -> dict[str, str]:
        """For the `websockets` client (`additional_headers=creds.headers`)."""
        return {"Authorization": self.authorization}


def _new_username(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def create_user_orm(username: str | None = None, password: str | None = None) -> Credentials:
    """An account + member user written through the ORM (autocommit: the test uses the `live_db` fixture).

    The password is hashed with PBKDF2 explicitly: tests/settings.py switches the test process to MD5,
    which the children (production hashers) would not accept.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher
    from django.db import transaction

    from accounts.models import Account, Membership

    username = username or _new_username("it")
    password = password or secrets.token_urlsafe(16)
    # The hasher class directly: make_password() only knows the hashers the (MD5-only) settings list.
    hasher = PBKDF2PasswordHasher()
    with transaction.atomic():
        account = Account.objects.create(name=username)
        user = get_user_model().objects.create(
            username=username, password=hasher.encode(password, hasher.salt())
        )
        Membership.objects.create(user=user, account=account)
    return Credentials(username=username, password=password, account_id=str(account.id))


def create_user_http(
    stack: LiveStack, username: str | None = None, password: str | None = None
) -> Credentials:
    """An account + user through `POST /api/v1/accounts` (signup is on in the stack)."""
    username = username or _new_username("it")
    password = password or secrets.token_urlsafe(16)
    response = httpx.post(
        f"{stack.api_url}/accounts", json={"username": username, "password": password}, timeout=30.0
    )
    if response.status_code != 201:
        raise AssertionError(f"POST /accounts answered {response.status_code}: {response.text[:500]}")
    return Credentials(username=username, password=password, account_id=str(response.json()["id"]))
