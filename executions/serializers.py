"""Serializers of the executions API: request bodies and the node-run / log rows."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from core.api.openapi import AnyJsonField, json_object
from core.api.serializers import StrictSerializer
from executions.models import NODE_RUN_FIELDS, ExecutionEvent, ExecutionStatus, NodeRun, WaitingReason

EXECUTION_STATUSES = ExecutionStatus.choices


@extend_schema_field(json_object("The run's input: the document the first node sees (default `{}`)."))
class InputField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["api", "schedule", "hook", "retry"]},
            "schedule_id": {"type": "string", "format": "uuid"},
            "scheduled_for": {"type": "string", "format": "date-time"},
            "trigger_id": {"type": "string", "format": "uuid"},
            "retry_of": {"type": "string", "format": "uuid"},
        },
    }
)
class TriggerField(serializers.JSONField):
    pass


# What the service accepts, told to client generators and fuzzers: http(s), a host (no credentials, no port past
# 9999 written), then anything without spaces or control characters (C1 ones included). An address literal the
# egress policy refuses is still a 400.
CALLBACK_URL_PATTERN = (
    r"^https?://[^\x00-\x20\x7f-\x9f\s/?#@:\[\]]+(:[0-9]{1,4})?([/?#][^\x00-\x20\x7f-\x9f\s]*)?$"
)


@extend_schema_field(
    {
        "type": "string",
        "maxLength": 2000,
        "pattern": CALLBACK_URL_PATTERN,
        "description": "An http or https URL that receives the ExecutionStatus (POST, JSON) once the execution "
        "ends, signed with the account's callback secret (`X-FlowRunner-Signature: sha256=<hex HMAC-SHA256 of "
        "the body>`; the secret is in GET /accounts/me). Failed deliveries (no 2xx answer) are retried with "
        "exponential backoff; each attempt is in the execution's logs. Subject to the egress policy of nodes.",
    }
)
class CallbackUrlField(serializers.CharField):
    pass


@extend_schema_serializer(component_name="Run")
class RunRequestSerializer(StrictSerializer):
    """Body of POST /flows/{flow_id}/run (optional)."""

    input = InputField(required=False, default=dict)
    callback_url = CallbackUrlField(required=False, allow_null=True, max_length=2000, trim_whitespace=False)

    def validate_input(self, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected a JSON object.")
        return value


@extend_schema_serializer(component_name="Retry")
class RetryRequestSerializer(StrictSerializer):
    """Body of POST /executions/{execution_id}/retry (optional): run the failed execution's own version
    (`pinned`) or the flow's current one."""

    version = serializers.ChoiceField(choices=["pinned", "current"], required=False, default="pinned")


class RunResponseSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=EXECUTION_STATUSES)
    flow_id = serializers.CharField()
    flow_version = serializers.CharField(allow_null=True)
    retry_of = serializers.UUIDField(allow_null=True, help_text="The execution this one retries.")


class ExecutionStatusSerializer(serializers.Serializer):
    """Documentation of the ExecutionStatus shape (built by executions.status)."""

    id = serializers.UUIDField()
    flow_id = serializers.CharField()
    flow_version = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=EXECUTION_STATUSES)
    progress = serializers.FloatField(min_value=0, max_value=100)
    current_node = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    input = serializers.DictField(help_text="The run's input.")
    trigger = TriggerField(
        help_text="What started it: `{type: api}`, `{type: schedule, schedule_id, scheduled_for}`, "
        "`{type: hook, trigger_id}` or `{type: retry, retry_of}`."
    )
    results = AnyJsonField(help_text="The final document once completed, else null.")
    start_time = serializers.DateTimeField(allow_null=True)
    end_time = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    waiting_reason = serializers.ChoiceField(
        choices=WaitingReason.choices,
        allow_null=True,
        help_text="Why a queued execution has not started: `flow_concurrency` (its flow's "
        "`metadata.concurrency` executions already hold a slot, or older ones of the flow wait first) or "
        "`account_concurrency` (FLOWRUNNER_ACCOUNT_MAX_RUNNING reached). It starts, FIFO per flow, when a slot "
        "frees. Null otherwise.",
    )


class NodeRunSerializer(serializers.ModelSerializer):
    """One attempt of one node (and batch); `action` and `error` are null until it ends with one."""

    action = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = NodeRun
        fields = list(NODE_RUN_FIELDS)
        read_only_fields = fields

    def get_action(self, obj: NodeRun) -> str | None:
        return obj.action or None

    def get_error(self, obj: NodeRun) -> str | None:
        return obj.error or None


def log_row(event: ExecutionEvent) -> dict[str, Any]:
    """An event as a log line `{seq, timestamp, node_id, level, message, data}`; status and node events are
    described in words so the log tells the whole story."""
    payload = event.payload or {}
    base = {
        "seq": event.seq,
        "timestamp": payload.get("timestamp") or event.created_at.isoformat(),
        "node_id": event.node_id or None,
    }
    if event.type == "log":
        log = payload.get("log") or {}
        return {
            **base,
            "level": log.get("level", "info"),
            "message": log.get("message", ""),
            "data": log.get("data"),
        }
    if event.type == "node":
        node = payload.get("node") or {}
        part = "" if node.get("batch_index") is None else f" batch {node['batch_index']}"
        message = f"node {node.get('node_id')}{part} attempt {node.get('attempt')}: {node.get('status')}"
        if node.get("error"):
            message += f" ({node['error']})"
        level = "error" if node.get("status") in ("failed", "timed_out") else "info"
        return {**base, "level": level, "message": message, "data": node}
    status = payload.get("status") or {}
    message = f"execution {status.get('status')}: progress {status.get('progress')}%"
    if status.get("current_node"):
        message += f", node {status['current_node']}"
    level = "error" if status.get("status") == "failed" else "info"
    return {
        **base,
        "level": level,
        "message": message,
        "data": {k: status.get(k) for k in ("status", "progress", "current_node", "error")},
    }


class LogRowSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    timestamp = serializers.DateTimeField()
    node_id = serializers.CharField(allow_null=True)
    level = serializers.CharField()
    message = serializers.CharField()
    data = AnyJsonField()
