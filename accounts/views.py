"""REST adapters of the accounts app: signup, login, logout, the caller's account and its secrets."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout as session_logout
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services, throttling
from accounts.authentication import WWW_AUTHENTICATE, SessionAuthentication
from accounts.credentials import authenticate_password
from accounts.http import ApiViewMixin
from accounts.models import ApiToken
from accounts.serializers import (
    AccountSerializer,
    CredentialsSerializer,
    ErrorSerializer,
    LoginResponseSerializer,
    SecretListSerializer,
    SecretSerializer,
    SecretValueSerializer,
    SignupResponseSerializer,
)
from flowrunner.exceptions import ApiError


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, description="Error envelope.") for code in codes}


_ACCOUNT_ID = OpenApiParameter(
    "account_id", str, OpenApiParameter.PATH, description="The caller's account id, or `me`."
)
_KEY = OpenApiParameter(
    "key", str, OpenApiParameter.PATH, description="Secret name, `[A-Za-z_][A-Za-z0-9_]*`."
)


class SignupView(ApiViewMixin, APIView):
    """POST /accounts — anonymous signup, only while FLOWRUNNER_ALLOW_SIGNUP is on."""

    # No authentication: a stale session or token must not turn a signup into a 401 or a CSRF failure.
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="account_signup",
        request=CredentialsSerializer,
        responses={201: SignupResponseSerializer, **_errors(400, 403, 409)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        if not settings.FLOWRUNNER_ALLOW_SIGNUP:
            raise ApiError("Signup is disabled on this server.", code="signup_disabled", status_code=403)
        body = CredentialsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        account, user = services.account_signup(**body.validated_data)
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
        request=CredentialsSerializer,
        responses={200: LoginResponseSerializer, **_errors(400, 401, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        body = CredentialsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = authenticate_password(
            username=body.validated_data["username"],
            password=body.validated_data["password"],
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
        request=None,
        responses={204: None, **_errors(400, 401)},
        description="Revokes the bearer token sent with this request: it answers 401 from then on. With a "
        "session cookie the session ends. Basic credentials cannot be revoked (400).",
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            services.api_token_revoke(token=request.auth)
        elif isinstance(request.successful_authenticator, SessionAuthentication):
            session_logout(request._request)
        else:
            raise ApiError(
                "Only a bearer token or a session can be logged out; Basic credentials stay valid.",
                code="not_revocable",
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccountMeView(ApiViewMixin, APIView):
    """GET /accounts/me — the caller's account."""

    @extend_schema(operation_id="account_me", responses={200: AccountSerializer, **_errors(401, 403)})
    def get(self, request: Request) -> Response:
        account = selectors.account_for_user(request.user)
        data = {
            "id": account.id,
            "name": account.name,
            "username": request.user.get_username(),
            "created_at": account.created_at,
        }
        return Response(AccountSerializer(data).data)


class SecretListView(ApiViewMixin, APIView):
    """GET /accounts/{id}/secrets — names and dates of the account's secrets, never their values."""

    @extend_schema(
        operation_id="secret_list",
        parameters=[_ACCOUNT_ID],
        responses={200: SecretListSerializer, **_errors(401, 404)},
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
        body = SecretValueSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        secret, created = services.secret_set(account=account, key=key, value=body.validated_data["value"])
        return Response(
            SecretSerializer(secret).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(
        operation_id="secret_create",
        parameters=[_ACCOUNT_ID, _KEY],
        request=SecretValueSerializer,
        responses={201: SecretSerializer, 200: SecretSerializer, **_errors(400, 401, 404)},
        description="Create the secret (201), or replace its value if the key exists (200).",
    )
    def post(self, request: Request, account_id: str, key: str) -> Response:
        return self._set(request, account_id, key)

    @extend_schema(
        operation_id="secret_set",
        parameters=[_ACCOUNT_ID, _KEY],
        request=SecretValueSerializer,
        responses={200: SecretSerializer, 201: SecretSerializer, **_errors(400, 401, 404)},
        description="Replace the secret's value (200), or create it (201).",
    )
    def put(self, request: Request, account_id: str, key: str) -> Response:
        return self._set(request, account_id, key)

    @extend_schema(
        operation_id="secret_delete",
        parameters=[_ACCOUNT_ID, _KEY],
        request=None,
        responses={204: None, **_errors(400, 401, 404)},
    )
    def delete(self, request: Request, account_id: str, key: str) -> Response:
        account = selectors.account_by_ref(user=request.user, ref=account_id)
        services.secret_delete(account=account, key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)
