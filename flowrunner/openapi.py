"""OpenAPI generation (drf-spectacular): the error envelope on every operation, shared components, links."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from flows.openapi import FLOW_YAML_FORMAT, flow_document_schema, flow_node_schema

# Strings the server refuses when they hold a NUL (Django's CharField; PostgreSQL cannot store one).
NO_NUL = r"^[^\u0000]*$"
JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


JSON_VALUE = ref("JsonValue")
FLOW_DOCUMENT = ref("FlowDocument")
FLOW_TEXT = {
    "type": "string",
    "format": FLOW_YAML_FORMAT,
    "minLength": 1,
    "description": "The flow's YAML text: a mapping that is a FlowDocument, with the rules the FlowDocument "
    "schema describes.",
}
# Integers a script, jsonb and the Go original all handle: 64 bits.
_INT64 = 2**63 - 1


def _json_value() -> dict[str, Any]:
    # Said as what a value must not be, recursively: a union that refers to itself is beyond client
    # generators (openapi-python-client drops the operations using it), while `not` reads as "any value".
    return {
        "description": "A JSON value the server can store and give to scripts: no NUL character in any "
        "string or key, integers within 64 bits, at most 100 levels deep.",
        "not": {
            "anyOf": [
                {"type": "string", "not": {"pattern": NO_NUL}},
                {"type": "integer", "not": {"minimum": -_INT64, "maximum": _INT64}},
                {"type": "array", "contains": {"not": JSON_VALUE}},
                {
                    "type": "object",
                    "not": {"propertyNames": {"pattern": NO_NUL}, "additionalProperties": JSON_VALUE},
                },
            ]
        },
    }


def json_object(description: str) -> dict[str, Any]:
    """An object whose values are JsonValues (a run's input)."""
    return {
        "type": "object",
        "description": description,
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": JSON_VALUE,
    }


@extend_schema_field(
    {
        "description": "400: the problems, each with its `path` (and `line`/`column` for a flow); 413: "
        "`{limit}`; 422: `{execution_id}`; otherwise null.",
        "anyOf": [
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {
                        "path": {"type": "string"},
                        "message": {"type": "string"},
                        "line": {"type": ["integer", "null"]},
                        "column": {"type": ["integer", "null"]},
                    },
                },
            },
            {"type": "object"},
            {"type": "null"},
        ],
    }
)
class ErrorDetailsField(serializers.JSONField):
    pass


@extend_schema_field({"description": "Any JSON value, null included."})
class AnyJsonField(serializers.JSONField):
    """A JSON value of any type: drf-spectacular's own nullable JSONField is a `oneOf` that null matches
    twice, so null would not validate."""


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. `validation_error`, `not_found`.")
    message = serializers.CharField()
    details = ErrorDetailsField()


class ErrorSerializer(serializers.Serializer):
    """The error envelope `{"error": {code, message, details}}` of every 4xx and 5xx answer."""

    error = ErrorBodySerializer()


# The answers any operation may give, by what it does; an operation's own errors (409, 422...) are declared
# on it with `errors()`.
AUTH_ERRORS = {
    401: "No credentials, or credentials that do not check out; `WWW-Authenticate` names the scheme.",
    403: "The user belongs to no account, or a session request lacks its CSRF token.",
    429: "Too many failed authentications from this client or for this user; retry after `Retry-After`.",
}
BODY_ERRORS = {
    400: "The body is malformed or not valid; `error.details` lists every problem.",
    413: "The body is larger than FLOWRUNNER_MAX_BODY_BYTES; `error.details.limit` is the limit.",
    415: "The `Content-Type` is not one this operation reads.",
}
QUERY_ERROR = "A query parameter is not valid; `error.details` names it."
NOT_FOUND = "No such object in the caller's account (another account's objects are not found either)."
NOT_ACCEPTABLE = "The `Accept` header names no media type this operation answers with."
UNAVAILABLE = "The database cannot be reached; retry after `Retry-After`."
_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "required": True,
            "description": "The authentication scheme to use.",
        }
    },
    "429": {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 0},
            "required": True,
            "description": "Seconds until the client may try again.",
        }
    },
    "503": {"Retry-After": {"schema": {"type": "integer", "minimum": 0}, "description": "Seconds."}},
}


def errors(descriptions: dict[int, str]) -> dict[int, OpenApiResponse]:
    """`errors({409: "why"})`: an operation's own error answers, each in the envelope."""
    return {code: OpenApiResponse(ErrorSerializer, description=text) for code, text in descriptions.items()}


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
        # A raw schema given for a body (a YAML flow) is the whole body: it cannot be left out.
        return schema, required or isinstance(serializer, dict)

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
        return {**_HEADERS.get(str(status_code), {}), **headers}

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
    "secrets_create": {
        201: {
            "ReplaceSecret": ("secrets_set", _SECRET),
            "DeleteSecret": ("secrets_delete", _SECRET),
        }
    },
}
# Bodies that may also be JSON `null` (read as `{}`), besides being left out.
NULL_BODIES = ("flows_run", "executions_retry")
_SIGNUP_LOGIN = {
    "operationId": "login",
    "requestBody": {"username": "$request.body#/username", "password": "$request.body#/password"},
    "description": "Log in as the user just created.",
}


def postprocess(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: the hand-built components and the links (drf-spectacular has no helper for
    either)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["JsonValue"] = _json_value()
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
