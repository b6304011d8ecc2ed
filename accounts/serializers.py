"""Request and response shapes of the accounts API; request serializers refuse unknown fields."""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import SECRET_KEY_PATTERN
from accounts.services import SECRET_VALUE_MAX_CHARS
from core.api.serializers import StrictSerializer, StringField

# Signup takes ASCII names: Django would accept any Unicode letter, but then normalizes the name (NFKC), which
# can turn a valid name into an invalid one (`¼` → `1⁄4`) or a longer one; ASCII is what the schema can state.
USERNAME_PATTERN = r"^[A-Za-z0-9_.@+-]+\Z"


class CredentialsSerializer(StrictSerializer):
    """Body of POST /login."""

    username = StringField(max_length=150)
    # Bounded: an enormous password is only a way to burn CPU in the hasher.
    password = StringField(max_length=1024, write_only=True, style={"input_type": "password"})


@extend_schema_field(
    {
        "type": "string",
        "format": "password",
        "description": "At least 8 characters, and not one of the 20,000 most common passwords (Django's "
        "CommonPasswordValidator, compared in lower case).",
    }
)
class NewPasswordField(StringField):
    pass


class SignupSerializer(StrictSerializer):
    """Body of POST /accounts."""

    username = StringField(
        max_length=150,
        validators=[RegexValidator(USERNAME_PATTERN, "Letters, digits and _.@+- (ASCII) only.")],
        help_text="ASCII letters, digits and `_.@+-`; unique whatever the case.",
    )
    password = NewPasswordField(
        min_length=8, max_length=1024, write_only=True, style={"input_type": "password"}
    )


class SignupResponseSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The account id used in /accounts/{id}/...")
    username = serializers.CharField()
    created_at = serializers.DateTimeField()


class LoginResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Bearer token; shown only once.")
    account_id = serializers.UUIDField()
    username = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)


class AccountSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    username = serializers.CharField()
    created_at = serializers.DateTimeField()
    callback_secret = serializers.CharField(
        help_text="The key of the `X-FlowRunner-Signature` header of completion callbacks: `sha256=` and the hex "
        "HMAC-SHA256 of the raw request body keyed by this secret."
    )


class SecretValueSerializer(StrictSerializer):
    """Body of POST/PUT /accounts/{account_id}/secrets/{key}: the value, stored encrypted, never returned."""

    value = StringField(
        allow_blank=True,
        max_length=SECRET_VALUE_MAX_CHARS,
        write_only=True,
        style={"input_type": "password"},
    )


class SecretSerializer(serializers.Serializer):
    """A secret's metadata; there is deliberately no field that could carry the value or ciphertext."""

    key = serializers.CharField(validators=[RegexValidator(SECRET_KEY_PATTERN)])
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SecretListSerializer(serializers.Serializer):
    secrets = SecretSerializer(many=True)
    total = serializers.IntegerField()
