"""OpenAPI generation (drf-spectacular): the error envelope on every operation, shared components, links."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse

from core.api.openapi import (
    AUTH_ERRORS,
    BODY_ERRORS,
    HEADERS,
    JSON,
    NO_NUL,
    NOT_ACCEPTABLE,
    NOT_FOUND,
    QUERY_ERROR,
    UNAVAILABLE,
    ErrorSerializer,
    json_value_schema,
    ref,
)
from flows.openapi import FLOW_YAML_FORMAT, flow_document_schema, flow_node_schema


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus every error an operation can answer (in the envelope, with the
    headers that come with it) and the NUL rule on request strings."""

    def get_description(self) -> str:
        # A view without a docstring of its own would be described by its mixin's (plumbing, not API).
        method = getattr(self.view, getattr(self.view, "action", self.method.lower()), None)
        return (getattr(method, "__doc__", None) or vars(type(self.view)).get("__doc__") or "").strip()

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, description in self._implied_errors().items():
            if str(code) not in responses:
                response = OpenApiResponse(ErrorSerializer, description=description)
                responses[str(code)] = self._get_response_for_code(response, str(code), [JSON], direction)
        return dict(sorted(responses.items()))

    def _get_response_for_code(self, serializer, status_code, media_types=None, direction="response"):
        if isinstance(serializer, OpenApiResponse) and serializer.response is ErrorSerializer:
            # Errors are JSON whatever the operation renders otherwise (flows.http.JsonErrorsMixin).
            media_types = [JSON]
        return super()._get_response_for_code(serializer, status_code, media_types, direction)

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        # A raw schema given for a body (a YAML flow) is the whole body: it cannot be left out; nor can a body
        # whose fields are each optional but one of which must be there (`body_required`).
        return schema, required or isinstance(serializer, dict) or getattr(serializer, "body_required", False)

    def _implied_errors(self) -> dict[int, str]:
        implied = {406: NOT_ACCEPTABLE, 503: UNAVAILABLE}
        security = self.get_auth()
        if security and {} not in security:
            implied.update(AUTH_ERRORS)
        elif security:
            # Optional credentials that do not check out are still counted by the throttle.
            implied[429] = AUTH_ERRORS[429]
        if self.method in ("POST", "PUT", "PATCH") and self._get_request_body():
            implied.update(BODY_ERRORS)
        parameters = self._get_parameters()
        if any(p["in"] == "path" for p in parameters):
            implied[404] = NOT_FOUND
        if any(p["in"] == "query" for p in parameters):
            implied.setdefault(400, QUERY_ERROR)
        return implied

    def _get_response_headers_for_code(self, status_code, direction="response") -> dict[str, Any]:
        headers = super()._get_response_headers_for_code(status_code, direction)
        return {**HEADERS.get(str(status_code), {}), **headers}

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction != "request":
            return schema
        if getattr(serializer, "rejects_unknown_fields", False):
            schema["additionalProperties"] = False
        properties = schema.get("properties", {})
        for name, field in serializer.fields.items():
            prop = properties.get(name, {})
            types = prop.get("type")
            is_string = types == "string" or (isinstance(types, list) and "string" in types)
            refuses_nul = any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators)
            # A flow's text has no pattern: its format says more (and a fuzzer would write to the pattern).
            if is_string and refuses_nul and "pattern" not in prop and prop.get("format") != FLOW_YAML_FORMAT:
                prop["pattern"] = NO_NUL
        return schema


# Links from an answer to the operations on what it created, so clients (and schemathesis's stateful
# phase) follow real objects: source operation → status → link name → (target operation, parameters).
_EXECUTION = {"execution_id": "$response.body#/execution_id"}
_FLOW = {"flow_id": "$response.body#/id"}
_SECRET = {"account_id": "$request.path.account_id", "key": "$request.path.key"}
_RUN_LINKS = {
    "GetExecution": ("executions_retrieve", _EXECUTION),
    "GetExecutionLogs": ("executions_logs", _EXECUTION),
    "GetExecutionNodes": ("executions_nodes", _EXECUTION),
    "CancelExecution": ("executions_cancel", _EXECUTION),
    "RetryExecution": ("executions_retry", _EXECUTION),
}
_SCHEDULE = {"schedule_id": "$response.body#/id"}
_TRIGGER = {"trigger_id": "$response.body#/id"}
LINKS: dict[str, dict[int, dict[str, tuple[str, dict[str, str]]]]] = {
    "flows_create": {
        201: {
            "GetFlow": ("flows_retrieve", _FLOW),
            "UpdateFlow": ("flows_update", _FLOW),
            "DeleteFlow": ("flows_delete", _FLOW),
            "GetFlowVersions": ("flows_versions", _FLOW),
            "RunFlow": ("flows_run", _FLOW),
        }
    },
    "flows_update": {200: {"GetFlow": ("flows_retrieve", _FLOW), "RunFlow": ("flows_run", _FLOW)}},
    "flows_run": {201: _RUN_LINKS, 200: _RUN_LINKS},
    "executions_retry": {201: _RUN_LINKS},
    "schedules_create": {
        201: {
            "GetSchedule": ("schedules_retrieve", _SCHEDULE),
            "UpdateSchedule": ("schedules_update", _SCHEDULE),
            "DeleteSchedule": ("schedules_delete", _SCHEDULE),
        }
    },
    "triggers_create": {201: {"DeleteTrigger": ("triggers_delete", _TRIGGER)}},
    "secrets_create": {
        201: {
            "ReplaceSecret": ("secrets_set", _SECRET),
            "DeleteSecret": ("secrets_delete", _SECRET),
        }
    },
}
# Bodies that may also be JSON `null` (read as `{}`), besides being left out.
NULL_BODIES = ("flows_run", "executions_retry", "triggers_create")
_SIGNUP_LOGIN = {
    "operationId": "login",
    "requestBody": {"username": "$request.body#/username", "password": "$request.body#/password"},
    "description": "Log in as the user just created.",
}


def postprocess(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: the hand-built components and the links (drf-spectacular has no helper for
    either)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["JsonValue"] = json_value_schema()
    schemas["FlowNode"] = flow_node_schema()
    schemas["FlowDocument"] = flow_document_schema(ref("FlowNode"))
    result["components"]["schemas"] = dict(sorted(schemas.items()))
    operations = {
        operation["operationId"]: operation
        for path in result.get("paths", {}).values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    for source, by_status in LINKS.items():
        for status, links in by_status.items():
            if source not in operations:
                continue
            response = operations[source]["responses"][str(status)]
            response["links"] = {
                name: {"operationId": target, "parameters": parameters}
                for name, (target, parameters) in links.items()
            }
    for operation_id in NULL_BODIES:
        if operation_id in operations:
            content = operations[operation_id]["requestBody"]["content"][JSON]
            content["schema"] = {"anyOf": [content["schema"], {"type": "null"}]}
    if "ScheduleCreateRequest" in schemas:
        # Exactly one of the two, which the fields alone cannot say.
        schemas["ScheduleCreateRequest"]["oneOf"] = [{"required": ["cron"]}, {"required": ["interval"]}]
    if "PatchedScheduleUpdateRequest" in schemas:
        schemas["PatchedScheduleUpdateRequest"]["not"] = {"required": ["cron", "interval"]}
    health = operations.get("health_retrieve")
    if health is not None:
        # The health check answers an unreachable database with its own body, not the error envelope.
        health["responses"]["503"] = {
            "description": "The database is unreachable.",
            "content": health["responses"]["200"]["content"],
        }
    if "signup" in operations:
        operations["signup"]["responses"]["201"]["links"] = {"Login": _SIGNUP_LOGIN}
    return result
