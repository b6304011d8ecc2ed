"""Request and response shapes of the flows API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from flows.models import Flow, FlowVersion


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class RejectUnknownFieldsMixin:
    """A field the endpoint does not know is a client mistake (a typo), not something to ignore."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class FlowWriteSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """Body of POST /flows and PUT /flows/{id}: the YAML text and, optionally, a name over metadata.name."""

    name = StrictCharField(required=False, max_length=Flow._meta.get_field("name").max_length)
    content = StrictCharField(trim_whitespace=False)


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

    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = FlowVersion
        fields = ["number", "version", "created_at", "created_by"]
        read_only_fields = fields
