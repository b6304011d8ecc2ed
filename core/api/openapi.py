"""OpenAPI pieces every app's views declare: the error envelope, JSON values, the errors an operation answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from core.json import MAX_DEPTH, MAX_INT

# Strings the server refuses when they hold a NUL (Django's CharField; PostgreSQL cannot store one).
NO_NUL = r"^[^\u0000]*$"
JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


JSON_VALUE = ref("JsonValue")


def json_value_schema() -> dict[str, Any]:
    # Said as what a value must not be, recursively: a union that refers to itself is beyond client
    # generators (openapi-python-client drops the operations using it), while `not` reads as "any value".
    return {
        "description": "A JSON value the server can store and give to scripts: no NUL character in any "
        f"string or key, numbers at most {MAX_INT} in magnitude, at most {MAX_DEPTH} levels deep.",
        "not": {
            "anyOf": [
                {"type": "string", "not": {"pattern": NO_NUL}},
                {"type": "number", "not": {"minimum": -MAX_INT, "maximum": MAX_INT}},
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
HEADERS = {
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
