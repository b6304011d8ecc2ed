"""Credential checks behind every door: Bearer tokens, cached Basic, /login; shared by DRF and Channels."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate as django_authenticate
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from accounts import throttling
from accounts.models import ApiToken
from accounts.selectors import NoAccount, member_account_id
from accounts.services import token_digest
from core.authorization import split_authorization
from core.errors import NotAuthenticated

logger = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_TOKEN_CHARS = 256
_BASIC_CACHE_PREFIX = "fr:basic:"


class InvalidCredentials(NotAuthenticated):
    """Wrong, expired or malformed credentials (401)."""


def has_account(user: AbstractBaseUser) -> bool:
    return member_account_id(user) is not None


def _user_with_account(**lookup) -> AbstractBaseUser | None:
    # One query for the user, its membership and account: every later account_for_user() is free.
    user_model = get_user_model()
    return user_model.objects.select_related("membership__account").filter(**lookup).first()


# --- Bearer -------------------------------------------------------------------------------------------------


def token_for_bearer(raw_token: str, *, client_ip: str) -> ApiToken:
    """The live API token (its user loaded) behind a raw bearer token; unknown, expired or revoked → 401
    invalid_token (and a throttled failure for the IP). A valid token is never throttled."""
    token = None
    if 0 < len(raw_token) <= _MAX_TOKEN_CHARS:
        token = (
            ApiToken.objects.select_related("user__membership__account")
            .filter(token_hash=token_digest(raw_token))
            .first()
        )
    now = timezone.now()
    valid = (
        token is not None
        and token.revoked_at is None
        and (token.expires_at is None or token.expires_at > now)
        and token.user.is_active
        and has_account(token.user)
        # A user moved to another account keeps no access to the old one through an old token.
        and token.user.membership.account_id == token.account_id
    )
    if not valid:
        # Check before counting: the first N failures answer 401, later ones 429 until the window ends.
        throttling.check(ip=client_ip)
        throttling.record_failure(ip=client_ip)
        raise InvalidCredentials("Invalid or expired token.", code="invalid_token")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # At most one write a minute per token; the filter keeps concurrent requests from all writing.
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
    return token


def user_for_token(raw_token: str, *, client_ip: str) -> AbstractBaseUser:
    """The user owning a live API token (see token_for_bearer)."""
    return token_for_bearer(raw_token, client_ip=client_ip).user


def bearer_token(header: str | bytes | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for no header or another scheme; a
    malformed Bearer header → 401 invalid_header."""
    scheme, credentials = split_authorization(header)
    if scheme != "bearer":
        return None
    if credentials is None:
        raise InvalidCredentials("Invalid authorization header.", code="invalid_header")
    return credentials


# --- Basic --------------------------------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    message = "\x00".join(f"{len(part)}:{part}" for part in parts).encode("utf-8", "surrogatepass")
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def basic_cache_seconds() -> float:
    return float(getattr(settings, "FLOWRUNNER_BASIC_AUTH_CACHE_SECONDS", 60))


def authenticate_password(
    *, username: str, password: str, client_ip: str, request: HttpRequest | None = None
) -> AbstractBaseUser:
    """Full username/password check (the slow hash), throttled per username and IP → user with an account;
    the right password of a user without one → 403 no_account. Used by POST /login and by Basic on a cache
    miss."""

    def attempt() -> AbstractBaseUser:
        # PostgreSQL refuses NUL in text: such a name could never match, and must not become a 500.
        user = (
            None if "\x00" in username else django_authenticate(request, username=username, password=password)
        )
        if user is None:
            raise InvalidCredentials()
        if not has_account(user):
            # The password was right: saying so to its holder tells them what to fix, not a guess to retry.
            raise NoAccount()
        return user

    return throttling.guarded_login(attempt, username=username, ip=client_ip, failure=InvalidCredentials)


def user_for_basic(
    username: str, password: str, *, client_ip: str, request: HttpRequest | None = None
) -> AbstractBaseUser:
    """Basic credentials → user. A verified pair is remembered for ~60 s under an HMAC of username and
    password (never the password), with an HMAC of the stored password hash, so a changed password or a
    deactivated user stops matching at once."""
    key = _BASIC_CACHE_PREFIX + _digest(username, password)
    try:
        remembered = cache.get(key)
    except Exception:
        logger.warning("basic auth cache unavailable", exc_info=True)
        remembered = None
    if isinstance(remembered, dict):
        user = _user_with_account(pk=remembered.get("user_id"))
        if (
            user is not None
            and user.is_active
            and has_account(user)
            and hmac.compare_digest(str(remembered.get("hash")), _digest(user.password))
        ):
            return user
    user = authenticate_password(username=username, password=password, client_ip=client_ip, request=request)
    try:
        cache.set(key, {"user_id": user.pk, "hash": _digest(user.password)}, timeout=basic_cache_seconds())
    except Exception:
        logger.warning("basic auth cache unavailable", exc_info=True)
    return user


def _decode_basic(credentials: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(credentials.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidCredentials("Invalid basic header.", code="invalid_header")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")
    username, sep, password = decoded.partition(":")
    if not sep:
        raise InvalidCredentials("Invalid basic header.", code="invalid_header")
    return username, password


# --- shared by DRF and the WebSocket handshake --------------------------------------------------------------


def user_for_authorization(
    header: str | bytes | None, *, client_ip: str, request: HttpRequest | None = None
) -> AbstractBaseUser | None:
    """Check an `Authorization` header value: Bearer or Basic → the user (with an account); no header or
    another scheme → None; wrong credentials → InvalidCredentials (401) or TooManyAttempts (429); the right password
    of a user without an account → NoAccount (403). Synchronous: call it through database_sync_to_async from
    Channels."""
    scheme, credentials = split_authorization(header)
    if scheme not in ("bearer", "basic"):
        return None
    if credentials is None:
        raise InvalidCredentials("Invalid authorization header.", code="invalid_header")
    if scheme == "bearer":
        return user_for_token(credentials, client_ip=client_ip)
    username, password = _decode_basic(credentials)
    return user_for_basic(username, password, client_ip=client_ip, request=request)
