"""Request and response shapes of the flows API."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from flowrunner.openapi import FLOW_TEXT
from flows.models import Flow, FlowVersion

# Not blank and no NUL (which PostgreSQL cannot store), as one pattern the schema can carry.
_NAME = RegexValidator(r"^[^\x00]*[^\s\x00][^\x00]*\Z", "Must contain a character other than whitespace.")


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(FLOW_TEXT)
class FlowTextField(StrictCharField):
    pass


class RejectUnknownFieldsMixin:
    """A field the endpoint does not know is a client mistake (a typo), not something to ignore."""

    # The OpenAPI schema says so too (`additionalProperties: false`, flowrunner.openapi).
    rejects_unknown_fields = True

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class FlowWriteSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """Body of POST /flows and PUT /flows/{id}: the YAML text and, optionally, a name over metadata.name."""

    # Kept as sent: trimming would make the length limit apply to another string than the one sent.
    name = StrictCharField(
        required=False,
        trim_whitespace=False,
        max_length=Flow._meta.get_field("name").max_length,
        validators=[_NAME],
        help_text="Overrides `metadata.name`.",
    )
    content = FlowTextField(trim_whitespace=False)


class FlowSerializer(serializers.ModelSerializer):
    """A flow with its current version: label, number and YAML text."""

    version = serializers.CharField(source="current_version.version", default=None, read_only=True)
    version_number = serializers.IntegerField(source="current_version.number", default=None, read_only=True)
    content = serializers.CharField(source="current_version.content", default=None, read_only=True)

    class Meta:
        model = Flow
        fields = [
            "id",
            "name",
            "description",
            "version",
            "version_number",
            "content",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class FlowVersionSerializer(serializers.ModelSerializer):
    """One stored version; `created_by` is the uploader's username (null once the user is gone)."""

    created_by = serializers.CharField(
        source="created_by.username", default=None, read_only=True, allow_null=True
    )

    class Meta:
        model = FlowVersion
        fields = ["number", "version", "created_at", "created_by"]
        read_only_fields = fields
