"""REST adapters of the accounts app: signup, login, logout, the caller's account and its secrets."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout as session_logout
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services, throttling
from accounts.authentication import WWW_AUTHENTICATE, SessionAuthentication
from accounts.credentials import authenticate_password
from accounts.models import SECRET_KEY_PATTERN, ApiToken
from accounts.serializers import (
    AccountSerializer,
    CredentialsSerializer,
    LoginResponseSerializer,
    SecretListSerializer,
    SecretSerializer,
    SecretValueSerializer,
    SignupResponseSerializer,
    SignupSerializer,
)
from accounts.services import SECRET_KEY_MAX_CHARS
from core.api.openapi import errors
from core.api.views import ApiViewMixin, validated_body
from core.errors import ApplicationError, Forbidden

_ACCOUNT_ID = OpenApiParameter(
    "account_id", str, OpenApiParameter.PATH, description="The caller's account id, or `me`."
)
_KEY = OpenApiParameter(
    "key",
    {"type": "string", "pattern": SECRET_KEY_PATTERN, "maxLength": SECRET_KEY_MAX_CHARS},
    OpenApiParameter.PATH,
    description="The secret's name.",
)
_BAD_KEY = {400: "The key is not a valid secret name."}


def _secret_set_schema(operation_id: str, statuses: tuple[int, int], description: str):  # noqa: ANN202
    """The schema of setting a secret, alike for POST (creates first) and PUT (replaces first)."""
    return extend_schema(
        operation_id=operation_id,
        tags=["accounts"],
        parameters=[_ACCOUNT_ID, _KEY],
        request=SecretValueSerializer,
        responses={code: SecretSerializer for code in statuses},
        description=description,
    )


class SignupView(ApiViewMixin, APIView):
    """POST /accounts — anonymous signup, only while FLOWRUNNER_ALLOW_SIGNUP is on."""

    # No authentication: a stale session or token must not turn a signup into a 401 or a CSRF failure.
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="signup",
        tags=["auth"],
        request=SignupSerializer,
        responses={
            201: SignupResponseSerializer,
            **errors(
                {
                    400: "The body is not valid, the username is not allowed or the password too weak; "
                    "`error.details` lists every problem.",
                    403: "Signup is disabled on this server (FLOWRUNNER_ALLOW_SIGNUP).",
                    409: "The username is taken (whatever the case).",
                }
            ),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        if not settings.FLOWRUNNER_ALLOW_SIGNUP:
            raise Forbidden("Signup is disabled on this server.", code="signup_disabled")
        account, user = services.account_signup(**validated_body(request, SignupSerializer))
        data = {"id": account.id, "username": user.get_username(), "created_at": account.created_at}
        return Response(SignupResponseSerializer(data).data, status=status.HTTP_201_CREATED)


class LoginView(ApiViewMixin, APIView):
    """POST /login — exchange a username and password for a bearer token (shown once)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        # With no authentication classes DRF would turn our 401 into a 403; the challenge keeps it a 401.
        return WWW_AUTHENTICATE

    @extend_schema(
        operation_id="login",
        tags=["auth"],
        request=CredentialsSerializer,
        responses={
            200: LoginResponseSerializer,
            **errors(
                {
                    401: "Wrong username or password.",
                    403: "The password is right, but the user belongs to no account.",
                    429: "Too many failed logins for this user or from this client; retry after "
                    "`Retry-After`.",
                }
            ),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        credentials = validated_body(request, CredentialsSerializer)
        user = authenticate_password(
            username=credentials["username"],
            password=credentials["password"],
            client_ip=throttling.client_ip(request),
            request=request,
        )
        token, raw = services.api_token_create(user=user, name="login")
        data = {
            "token": raw,
            "account_id": token.account_id,
            "username": user.get_username(),
            "expires_at": token.expires_at,
        }
        return Response(LoginResponseSerializer(data).data)


class LogoutView(ApiViewMixin, APIView):
    """POST /logout — revoke the bearer token this request carries (or end the session)."""

    @extend_schema(
        operation_id="logout",
        tags=["auth"],
        request=None,
        responses={204: None, **errors({400: "Basic credentials cannot be logged out."})},
        description="Revokes the bearer token sent with this request: it answers 401 from then on. With a "
        "session cookie the session ends. Basic credentials cannot be revoked (400).",
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            services.api_token_revoke(token=request.auth)
        elif isinstance(request.successful_authenticator, SessionAuthentication):
            session_logout(request._request)
        else:
            raise ApplicationError(
                "Only a bearer token or a session can be logged out; Basic credentials stay valid.",
                code="not_revocable",
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccountMeView(ApiViewMixin, APIView):
    """GET /accounts/me — the caller's account."""

    @extend_schema(operation_id="accounts_me", tags=["accounts"], responses={200: AccountSerializer})
    def get(self, request: Request) -> Response:
        account = selectors.account_for_user(request.user)
        data = {
            "id": account.id,
            "name": account.name,
            "username": request.user.get_username(),
            "created_at": account.created_at,
            "callback_secret": services.account_callback_secret(account=account),
        }
        return Response(AccountSerializer(data).data)


class SecretListView(ApiViewMixin, APIView):
    """GET /accounts/{id}/secrets — names and dates of the account's secrets, never their values."""

    @extend_schema(
        operation_id="secrets_list",
        tags=["accounts"],
        parameters=[_ACCOUNT_ID],
        responses={200: SecretListSerializer},
    )
    def get(self, request: Request, account_id: str) -> Response:
        account = selectors.account_by_ref(user=request.user, ref=account_id)
        secrets = list(selectors.secret_list(account=account))
        data = {"secrets": SecretSerializer(secrets, many=True).data, "total": len(secrets)}
        return Response(data)


class SecretDetailView(ApiViewMixin, APIView):
    """POST/PUT/DELETE /accounts/{id}/secrets/{key}.

    POST and PUT are the same upsert: 201 when the key is new, 200 when an existing value was replaced
    (so a POST on an existing key updates it rather than answering 409). The value is never returned.
    """

    def _set(self, request: Request, account_id: str, key: str) -> Response:
        account = selectors.account_by_ref(user=request.user, ref=account_id)
        value = validated_body(request, SecretValueSerializer)["value"]
        secret, created = services.secret_set(account=account, key=key, value=value)
        return Response(
            SecretSerializer(secret).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @_secret_set_schema(
        "secrets_create", (201, 200), "Create the secret (201), or replace its value if the key exists (200)."
    )
    def post(self, request: Request, account_id: str, key: str) -> Response:
        return self._set(request, account_id, key)

    @_secret_set_schema("secrets_set", (200, 201), "Replace the secret's value (200), or create it (201).")
    def put(self, request: Request, account_id: str, key: str) -> Response:
        return self._set(request, account_id, key)

    @extend_schema(
        operation_id="secrets_delete",
        tags=["accounts"],
        parameters=[_ACCOUNT_ID, _KEY],
        request=None,
        responses={204: None, **errors(_BAD_KEY)},
        description="Delete the secret; a key never set answers 404.",
    )
    def delete(self, request: Request, account_id: str, key: str) -> Response:
        account = selectors.account_by_ref(user=request.user, ref=account_id)
        services.secret_delete(account=account, key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)
