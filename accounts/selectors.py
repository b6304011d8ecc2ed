"""Reads of accounts and secrets; every secret read is scoped to one account."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from accounts import vault
from accounts.models import Account, Membership, Secret
from core.errors import Forbidden, NotFound


class NoAccount(Forbidden):
    """403: the credentials are right, but the user belongs to no account (e.g. made with createsuperuser)."""

    default_code = "no_account"
    default_message = (
        "This user does not belong to an account: give it a membership in the admin (Accounts → Memberships), "
        "or use a user made by `flowrunner createaccount` or POST /api/v1/accounts."
    )


def member_account(user: AbstractBaseUser | Any) -> Account | None:
    """The user's account, or None for one who belongs to none (anonymous, a bare superuser)."""
    try:
        return user.membership.account
    except (Membership.DoesNotExist, AttributeError):
        return None


def member_account_id(user: AbstractBaseUser | Any) -> uuid.UUID | None:
    """The user's account id without loading the account, or None (see member_account)."""
    try:
        return user.membership.account_id
    except (Membership.DoesNotExist, AttributeError):
        return None


def user_by_username(username: str) -> AbstractBaseUser | None:
    """The user with exactly this username, or None."""
    user_model = get_user_model()
    return user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()


def account_for_user(user: AbstractBaseUser) -> Account:
    """The caller's account (the tenant); a user without a membership (e.g. a bare superuser) → 403
    no_account."""
    account = member_account(user)
    if account is None:
        raise NoAccount()
    return account


def account_by_ref(*, user: AbstractBaseUser, ref: str) -> Account:
    """Resolve `{id}` of `/accounts/{id}/...`: `me` or the caller's own account id; anything else → 404,
    so another tenant's id is indistinguishable from a nonexistent one."""
    account = account_for_user(user)
    if ref == "me":
        return account
    try:
        wanted = uuid.UUID(ref)
    except (ValueError, AttributeError, TypeError):
        raise NotFound("Account not found.")
    if wanted != account.id:
        raise NotFound("Account not found.")
    return account


def _account_id(account: Account | uuid.UUID | str) -> uuid.UUID | str:
    return account.id if isinstance(account, Account) else account


def secret_list(*, account: Account | uuid.UUID | str) -> QuerySet[Secret]:
    """The account's secrets ordered by key, without loading the ciphertext."""
    return Secret.objects.filter(account_id=_account_id(account)).defer("ciphertext").order_by("key")


def account_has_secrets(*, account: Account | uuid.UUID | str) -> bool:
    """Whether the account holds any secret (most hold none: then nothing needs decrypting to redact)."""
    return Secret.objects.filter(account_id=_account_id(account)).exists()


def secrets_decrypted(*, account: Account | uuid.UUID | str) -> dict[str, str]:
    """key → clear value of every secret of the account (an Account or its id). For workers only: the result
    must live no longer than the node run that needs it and must never be logged or returned."""
    rows = Secret.objects.filter(account_id=_account_id(account)).values_list("key", "ciphertext")
    return {key: vault.decrypt(ciphertext) for key, ciphertext in rows}


def secret_values(*, account: Account | uuid.UUID | str) -> list[str]:
    """The account's clear secret values for redaction: non-empty, distinct, longest first, so a value that
    contains another one is masked whole before the shorter one is."""
    values = {value for value in secrets_decrypted(account=account).values() if value}
    return sorted(values, key=lambda value: (-len(value), value))
