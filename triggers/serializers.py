"""Request and response shapes of schedules, hook triggers and hook deliveries."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from core.api.serializers import BooleanField, StrictSerializer, StringField
from executions.serializers import CALLBACK_URL_PATTERN, InputField
from triggers.models import Schedule, Trigger


def _object(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise serializers.ValidationError("Expected a JSON object.")
    return value


@extend_schema_field(
    {
        # drf-spectacular adds "null" itself for a field that allows null
        "type": "string",
        "format": "callback-url",
        "maxLength": 2000,
        "pattern": CALLBACK_URL_PATTERN,
    }
)
class CallbackUrlField(StringField):
    """An http(s) URL the egress policy allows (named by the `callback-url` format)."""


@extend_schema_field({"type": "string", "format": "cron", "minLength": 9, "maxLength": 200})
class CronField(StringField):
    """Five cron fields, as beat's crontab and croniter both read them (the `cron` format)."""


@extend_schema_field({"type": "string", "format": "go-duration", "minLength": 2, "maxLength": 64})
class IntervalField(StringField):
    """A duration of 1s to 366 days in the flows' notation, `30s`, `1m30s`, `2h` (the `go-duration` format)."""


@extend_schema_field({"type": "string", "format": "time-zone", "minLength": 1, "maxLength": 64})
class TimeZoneField(StringField):
    """An IANA time zone name (the `time-zone` format)."""


class _ScheduleFields(StrictSerializer):
    cron = CronField(
        required=False,
        max_length=200,
        help_text="Five cron fields (minute hour day-of-month month day-of-week), in `timezone`.",
    )
    interval = IntervalField(
        required=False,
        max_length=64,
        help_text="A duration of at least 1s (`30s`, `1m30s`, `1h`): the schedule fires every interval.",
    )
    timezone = TimeZoneField(
        required=False, max_length=64, help_text="IANA name of the time zone of `cron` (default UTC)."
    )
    input = InputField(required=False)
    enabled = BooleanField(required=False)
    callback_url = CallbackUrlField(
        required=False, allow_null=True, help_text="Receives the ExecutionStatus when a run it started ends."
    )

    def validate_input(self, value: Any) -> Any:
        return _object(value)


@extend_schema_serializer(component_name="ScheduleCreate")
class ScheduleCreateSerializer(_ScheduleFields):
    """Body of POST /flows/{flow_id}/schedules: exactly one of `cron` or `interval`."""

    body_required = True


@extend_schema_serializer(component_name="ScheduleUpdate")
class ScheduleUpdateSerializer(_ScheduleFields):
    """Body of PATCH /schedules/{schedule_id}: the fields to change; `cron` replaces an interval and
    `interval` a cron expression (not both)."""


class ScheduleSerializer(serializers.ModelSerializer):
    flow_id = serializers.CharField()
    cron = serializers.SerializerMethodField()
    interval = serializers.SerializerMethodField()
    input = serializers.DictField()
    last_execution_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = Schedule
        fields = [
            "id",
            "flow_id",
            "cron",
            "interval",
            "timezone",
            "input",
            "enabled",
            "callback_url",
            "next_run_at",
            "last_run_at",
            "last_execution_id",
            "created_at",
        ]
        read_only_fields = fields

    def get_cron(self, obj: Schedule) -> str | None:
        return obj.cron or None

    def get_interval(self, obj: Schedule) -> str | None:
        return obj.interval or None


@extend_schema_serializer(component_name="TriggerWrite")
class TriggerWriteSerializer(StrictSerializer):
    """Body of POST /flows/{flow_id}/triggers (optional)."""

    name = StringField(required=False, allow_blank=True, max_length=200)
    enabled = BooleanField(required=False, default=True)
    callback_url = CallbackUrlField(
        required=False, allow_null=True, help_text="Receives the ExecutionStatus when a run it started ends."
    )


class TriggerSerializer(serializers.ModelSerializer):
    """A hook trigger as listed: its URL, never its secret."""

    flow_id = serializers.CharField()
    url = serializers.SerializerMethodField(help_text="Where to POST deliveries.")

    class Meta:
        model = Trigger
        fields = ["id", "flow_id", "name", "url", "enabled", "callback_url", "last_fired_at", "created_at"]
        read_only_fields = fields

    def get_url(self, obj: Trigger) -> str:
        request = self.context.get("request")
        path = f"/api/v1/hooks/{obj.id}"
        return request.build_absolute_uri(path) if request is not None else path


class TriggerCreatedSerializer(TriggerSerializer):
    """The new trigger with its secret: shown here only."""

    secret = serializers.SerializerMethodField(
        help_text="Shown only in this answer. Send it as `Authorization: Bearer <secret>`, or key the "
        "HMAC-SHA256 of `X-FlowRunner-Signature` with it."
    )

    class Meta(TriggerSerializer.Meta):
        fields = [*TriggerSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, obj: Trigger) -> str:
        return self.context["secret"]


class HookAcceptedSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
