"""Request and response shapes of the flows API."""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.serializers import StrictSerializer, StringField
from flows.models import Flow, FlowVersion
from flows.openapi import FLOW_TEXT

# Not blank and no NUL (which PostgreSQL cannot store), as one pattern the schema can carry.
_NAME = RegexValidator(r"^[^\x00]*[^\s\x00][^\x00]*\Z", "Must contain a character other than whitespace.")


@extend_schema_field(FLOW_TEXT)
class FlowTextField(StringField):
    pass


class FlowWriteSerializer(StrictSerializer):
    """Body of POST /flows and PUT /flows/{id}: the YAML text and, optionally, a name over metadata.name."""

    name = StringField(
        required=False,
        max_length=Flow._meta.get_field("name").max_length,
        validators=[_NAME],
        help_text="Overrides `metadata.name`.",
    )
    content = FlowTextField()


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
