"""DRF authentication classes: Bearer API token, cached HTTP Basic, session (CSRF enforced)."""

from __future__ import annotations

from rest_framework import authentication

from accounts.credentials import bearer_token, token_for_bearer, user_for_authorization
from accounts.throttling import client_ip
from core.api.exceptions import api_exception
from core.authorization import split_authorization
from core.errors import ApplicationError

# DRF puts the first authentication class's header on every 401; Basic is the scheme the API documents first.
WWW_AUTHENTICATE = 'Basic realm="api"'


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` with a token from POST /login (or api_token_create). `request.auth` is
    the ApiToken, so POST /logout can revoke exactly the token it was called with."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if split_authorization(header)[0] != "bearer":
            return None
        try:
            raw = bearer_token(header)
            if raw is None:
                return None
            token = token_for_bearer(raw, client_ip=client_ip(request))
        except ApplicationError as exc:
            raise api_exception(exc)
        return (token.user, token)

    def authenticate_header(self, request) -> str:
        return WWW_AUTHENTICATE


class CachedBasicAuthentication(authentication.BaseAuthentication):
    """HTTP Basic; a verified credential is remembered briefly so per-request Basic stays cheap."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if split_authorization(header)[0] != "basic":
            return None
        try:
            user = user_for_authorization(header, client_ip=client_ip(request), request=request)
        except ApplicationError as exc:
            raise api_exception(exc)
        return (user, None) if user is not None else None

    def authenticate_header(self, request) -> str:
        return WWW_AUTHENTICATE


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication (CSRF enforced). A signed-in user without an account (an admin made with
    createsuperuser) is authenticated, and the views answer 403 no_account, which says what is wrong."""
