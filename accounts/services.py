"""Writes of the accounts app: signup, API tokens, secrets (encrypted through the vault)."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import vault
from accounts.models import SECRET_KEY_PATTERN, Account, ApiToken, Membership, Secret
from accounts.selectors import account_for_user
from core.errors import Conflict, NotFound, ValidationFailed

TOKEN_PREFIX = "fr_"
# Bounded so one request cannot make the database store megabytes of ciphertext per key.
SECRET_VALUE_MAX_CHARS = 65_536
SECRET_KEY_MAX_CHARS = Secret._meta.get_field("key").max_length
_SECRET_KEY_RE = re.compile(SECRET_KEY_PATTERN)


def token_digest(raw_token: str) -> str:
    """The stored form of an API token: SHA-256 hex (the token has 256 random bits: no slow hash needed)."""
    return hashlib.sha256(raw_token.encode("utf-8")).hexdigest()


def _problems(path: str, messages: list[str]) -> list[dict[str, str]]:
    return [{"path": path, "message": str(message)} for message in messages]


@transaction.atomic
def account_signup(
    *, username: str, password: str, account_name: str | None = None
) -> tuple[Account, AbstractBaseUser]:
    """Create a user, its account and the membership → (Account, User).

    Username uniqueness is case-insensitive so `Alice` cannot pose as `alice`; taken → 409 username_taken.
    Invalid username or a password refused by AUTH_PASSWORD_VALIDATORS → 400 with every problem listed.
    """
    user_model = get_user_model()
    username = user_model.normalize_username(username or "")
    problems: list[dict[str, str]] = []
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    try:
        field.run_validators(username)
        if not username:
            raise ValidationError("This field may not be blank.")
    except ValidationError as exc:
        problems += _problems("username", exc.messages)
    try:
        validate_password(password, user=user_model(**{user_model.USERNAME_FIELD: username}))
    except ValidationError as exc:
        problems += _problems("password", exc.messages)
    if problems:
        raise ValidationFailed("The account could not be created.", details=problems)
    if user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__iexact": username}).exists():
        raise Conflict("This username is taken.", code="username_taken")
    try:
        # A savepoint, so a concurrent signup that wins the race leaves our transaction usable.
        with transaction.atomic():
            user = user_model.objects.create_user(**{user_model.USERNAME_FIELD: username}, password=password)
    except IntegrityError:
        raise Conflict("This username is taken.", code="username_taken")
    account = account_create(name=account_name or username)
    Membership.objects.create(user=user, account=account)
    return account, user


def account_create(*, name: str) -> Account:
    """An account with no member yet (signup adds one; `flowrunner run` keeps its throwaway account userless)."""
    return Account.objects.create(name=name)


@transaction.atomic
def api_token_create(
    *, user: AbstractBaseUser, name: str = "login", ttl: float | None = None
) -> tuple[ApiToken, str]:
    """Issue a bearer token for `user` in its account → (ApiToken, raw token). The raw token is returned
    once and never stored. `ttl` in seconds, default FLOWRUNNER_TOKEN_TTL; zero or less means no expiry."""
    account = account_for_user(user)
    ttl = settings.FLOWRUNNER_TOKEN_TTL if ttl is None else ttl
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        account=account,
        user=user,
        name=(name or "login")[: ApiToken._meta.get_field("name").max_length],
        prefix=raw[:8],
        token_hash=token_digest(raw),
        expires_at=timezone.now() + timedelta(seconds=ttl) if ttl and ttl > 0 else None,
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token (idempotent: revoking twice keeps the first revocation time)."""
    now = timezone.now()
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    token.refresh_from_db(fields=["revoked_at"])
    return token


def secret_key_validate(key: str) -> None:
    """400 unless `key` is a valid secret name (`[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters)."""
    if not isinstance(key, str) or not _SECRET_KEY_RE.fullmatch(key):
        raise ValidationFailed(
            "Invalid secret key.",
            details=[{"path": "key", "message": "Must match [A-Za-z_][A-Za-z0-9_]*."}],
        )
    if len(key) > SECRET_KEY_MAX_CHARS:
        raise ValidationFailed(
            "Invalid secret key.",
            details=[{"path": "key", "message": f"At most {SECRET_KEY_MAX_CHARS} characters."}],
        )


@transaction.atomic
def secret_set(*, account: Account, key: str, value: str) -> tuple[Secret, bool]:
    """Create or replace the secret `key` of `account` → (Secret, created). The value is encrypted here
    and never kept in clear; errors never echo it."""
    secret_key_validate(key)
    if not isinstance(value, str):
        raise ValidationFailed(
            "Invalid secret value.", details=[{"path": "value", "message": "Must be a string."}]
        )
    if len(value) > SECRET_VALUE_MAX_CHARS:
        raise ValidationFailed(
            "Invalid secret value.",
            details=[{"path": "value", "message": f"At most {SECRET_VALUE_MAX_CHARS} characters."}],
        )
    ciphertext = vault.encrypt(value)
    # select_for_update + savepoint inside update_or_create: two concurrent creates of one key end as
    # one row, the later value winning, instead of an IntegrityError.
    secret, created = Secret.objects.update_or_create(
        account=account, key=key, defaults={"ciphertext": ciphertext}
    )
    return secret, created


@transaction.atomic
def secret_delete(*, account: Account, key: str) -> None:
    """Delete the secret `key` of `account`; a missing key → 404."""
    secret_key_validate(key)
    deleted, _ = Secret.objects.filter(account=account, key=key).delete()
    if not deleted:
        raise NotFound("Secret not found.")


CALLBACK_SECRET_PREFIX = "frcb_"


def account_callback_secret(*, account: Account) -> str:
    """The key that signs the account's completion callbacks (HMAC-SHA256), made on first use and stored
    encrypted; two first uses at once agree on one key."""
    if not account.callback_secret:
        made = vault.encrypt(CALLBACK_SECRET_PREFIX + secrets.token_urlsafe(32))
        Account.objects.filter(id=account.id, callback_secret="").update(callback_secret=made)
        account.callback_secret = Account.objects.values_list("callback_secret", flat=True).get(id=account.id)
    return vault.decrypt(account.callback_secret)
