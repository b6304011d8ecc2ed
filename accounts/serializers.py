"""Request and response shapes of the accounts API; request serializers refuse unknown fields."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """A request serializer that answers 400 for fields it does not know (a typo must not pass silently)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StringField(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's also coerces numbers) and keeps whitespace as sent."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CredentialsSerializer(StrictSerializer):
    username = StringField(max_length=150)
    # Bounded: an enormous password is only a way to burn CPU in the hasher.
    password = StringField(max_length=1024, write_only=True, style={"input_type": "password"})


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


class SecretValueSerializer(StrictSerializer):
    value = StringField(allow_blank=True, write_only=True, style={"input_type": "password"})


class SecretSerializer(serializers.Serializer):
    """A secret's metadata; there is deliberately no field that could carry the value or ciphertext."""

    key = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SecretListSerializer(serializers.Serializer):
    secrets = SecretSerializer(many=True)
    total = serializers.IntegerField()


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """The error envelope `{"error": {code, message, details}}` (for the OpenAPI schema)."""

    error = ErrorBodySerializer()
