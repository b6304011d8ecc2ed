"""The strict request serializer every API body goes through, and its strict string field."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """A request serializer that answers 400 for fields it does not know (a typo must not pass silently)."""

    # The OpenAPI schema says so too (`additionalProperties: false`, flowrunner.openapi.AutoSchema).
    rejects_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StringField(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's also coerces numbers and booleans) and keeps whitespace
    as sent: trimming would make a length limit apply to another string than the one sent."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class BooleanField(serializers.BooleanField):
    """`true` or `false` only: DRF's BooleanField also takes 0, 1, "yes", "on"..., which the schema refuses."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data
