"""Schemathesis hooks: the flow-text format, YAML flow bodies, common passwords, and the error envelope."""

# Loaded by `schemathesis run` from the repository root (schemathesis.toml) and by test_rest_fuzz.py. JSON
# Schema states a flow's shape but not its cross-references (every `next` target a node, one start node), nor
# Django's list of common passwords: the document names the first as a format (`flow-yaml`) and states the
# second in words, and here the fuzzer learns to write values that follow them.

from __future__ import annotations

import json
import uuid
import zoneinfo
from datetime import datetime
from urllib.parse import urlsplit

import jsonschema
import schemathesis
import yaml
from croniter import croniter
from django.contrib.auth.password_validation import CommonPasswordValidator
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.core.parameters import ParameterLocation

from core.durations import DurationError, parse_duration

YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")

# Printable text a YAML document and PostgreSQL both keep as it is (no NUL, no surrogate, no control).
_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
_NODE_ID = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
_COMMON = CommonPasswordValidator().passwords


@st.composite
def _node(draw: st.DrawFn, index: int) -> dict:
    """One node of a kind that finishes quickly and reaches nothing outside the server."""
    kind = draw(st.sampled_from(["transform", "log", "store", "wait"]))
    if kind == "transform":
        value = draw(st.integers(-1000, 1000))
        return {"type": "transform", "params": {"script": f"return {{step_{index}: {value}}};"}}
    if kind == "log":
        message = draw(st.text(_TEXT, min_size=1, max_size=40).filter(str.strip))
        level = draw(st.sampled_from(["debug", "info", "warning", "error"]))
        return {"type": "log", "params": {"message": message, "level": level}}
    if kind == "store":
        return {"type": "store", "params": {"operation": "increment", "key": f"fuzz_{index}"}}
    return {"type": "wait", "params": {"duration": f"{draw(st.integers(1, 50))}ms"}}


@st.composite
def flow_documents(draw: st.DrawFn) -> dict:
    """A valid flow: a chain of 1 to 4 nodes (the first is the start), some with retries or error edges."""
    ids = draw(st.lists(_NODE_ID, min_size=1, max_size=4, unique=True))
    nodes = {}
    for index, node_id in enumerate(ids):
        node = draw(_node(index))
        if index + 1 < len(ids):
            node["next"] = {"success": ids[index + 1]}
            if draw(st.booleans()):
                node["next"]["error"] = ids[-1]
        if draw(st.booleans()):
            node["retry"] = {"max_retries": draw(st.integers(0, 2)), "wait": "10ms"}
        nodes[node_id] = node
    metadata = {"name": draw(st.text(_TEXT, min_size=1, max_size=60).filter(str.strip))}
    if draw(st.booleans()):
        metadata["description"] = draw(st.text(_TEXT, max_size=80))
    if draw(st.booleans()):
        metadata["version"] = draw(st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True))
    return {"metadata": metadata, "nodes": nodes}


def flow_texts() -> st.SearchStrategy[str]:
    return flow_documents().map(lambda doc: yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


schemathesis.openapi.format("flow-yaml", flow_texts())
# Schedules: cron expressions and durations the scheduler takes, at most a few firings during a run (a fuzzed
# `1s` schedule would fire every second for the rest of it), zones that exist, callbacks to a closed local port.
schemathesis.openapi.format(
    "cron",
    st.tuples(st.integers(0, 59), st.integers(0, 23), st.sampled_from(["*", "1-5", "0,6", "mon-fri"])).map(
        lambda parts: f"{parts[0]} {parts[1]} * * {parts[2]}"
    ),
)
schemathesis.openapi.format(
    "go-duration",
    st.one_of(st.integers(1, 48).map(lambda h: f"{h}h"), st.integers(60, 1440).map(lambda m: f"{m}m")),
)
schemathesis.openapi.format(
    "time-zone",
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
)
schemathesis.openapi.format(
    "callback-url", st.integers(1, 999).map(lambda n: f"http://127.0.0.1:9/callback/{n}")
)
for _media_type in YAML_MEDIA_TYPES:
    schemathesis.openapi.media_type(_media_type, flow_texts().map(str.encode))


def _content_type(response) -> str:
    # Schemathesis gives response headers lowercased, each a list of values.
    values = response.headers.get("content-type") or [""]
    return values[0] if isinstance(values, list) else str(values)


def _daphne_multipart_refusal(response) -> bool:
    """Twisted (under daphne) parses every multipart/form-data POST itself and answers a malformed one with a
    bare 400 before the request reaches Django: not the application's to shape (docs/security.md)."""
    request_type = response.request.headers.get("Content-Type") or ""
    return (
        response.status_code == 400
        and request_type.startswith("multipart/form-data")
        and not response.content
        and not _content_type(response)
    )


@schemathesis.hook
def filter_case(ctx, case) -> bool:
    """Leave out signups whose password has the schema's shape but is one of Django's common passwords, which
    the document describes in words only (a `not: enum` of 20,000 entries would be the alternative)."""
    if (
        ctx.operation is None
        or ctx.operation.label != "POST /api/v1/accounts"
        or not isinstance(case.body, dict)
    ):
        return True
    password = case.body.get("password")
    shaped = isinstance(password, str) and 8 <= len(password) <= 1024
    # CommonPasswordValidator compares the lowercased, stripped password with its list.
    return not (shaped and password.lower().strip() in _COMMON)


@schemathesis.hook
def filter_failure(ctx, failure, case, response) -> bool:
    """Keep every failure but a "negative" body that follows the document (see _body_follows_the_document), and
    two answers the document describes that depend on earlier requests, not on the request itself (as a 409
    does, which schemathesis already accepts):

    - `ignored_auth` probing with invalid credentials and getting the 429 of the failed-authentication
      throttle, which refuses them as surely as a 401: the probes are failed authentications themselves, so
      a run gets there after FLOWRUNNER_AUTH_FAILURE_LIMIT of them;
    - a run whose Idempotency-Key an earlier run with another input used (the fuzzer repeats short keys),
      answered 422 `idempotency_key_reused` as the IETF Idempotency-Key draft asks.
    """
    throttled = "invalid credentials provided" in failure.message and "got `429 " in failure.message
    if failure.code == "ST401" and throttled:
        return False
    if failure.code == "ST201" and _only_the_body_was_mutated(case) and _body_follows_the_document(case):
        return False
    reused = response.status_code == 422 and b'"idempotency_key_reused"' in (response.content or b"")
    return not (failure.code == "ST202" and (reused or _unparsable_schedule(case, response)))


# Schemathesis takes a generated body for a negative one when its own validator refuses it, and that validator
# fails every format it does not know on purpose (so that a value drawn without its format counts as a
# violation): a schedule with a valid `interval: "24h"` and `timezone: "UTC"` then passes for invalid data
# whatever was mutated (a `format` dropped from a null callback_url, a `required` of one `oneOf` branch
# while the other holds). Such a failure is dropped only if the body was the one part mutated and it follows
# the document under a validator that checks every format as the server means it; a format without a check
# here (or a flow's YAML, which only the server parses) counts as broken, so the failure is kept.
class _StrictFormats(jsonschema.FormatChecker):
    def check(self, instance, format: str) -> None:  # noqa: A002, ANN001
        if format not in self.checkers:
            raise jsonschema.exceptions.FormatError(f"no check for the format {format!r}")
        super().check(instance, format)


def _interval(value: str) -> bool:
    # the range the field's description states: at least 1s, at most 366 days
    return 1.0 <= parse_duration(value) <= 366 * 86400


def _callback_url(value: str) -> bool:
    parts = urlsplit(value)
    parts.port  # noqa: B018  (reading it checks it: a port out of range raises ValueError)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _uri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


_FORMATS = _StrictFormats(formats=())
_FORMAT_CHECKS = {
    "cron": lambda value: len(value.split()) == 5 and croniter.is_valid(value),
    "go-duration": _interval,
    "time-zone": lambda value: value in zoneinfo.available_timezones(),
    "callback-url": _callback_url,
    "flow-yaml": lambda value: False,
    "uuid": lambda value: bool(uuid.UUID(value)),
    "date-time": lambda value: bool(datetime.fromisoformat(value).tzinfo),
    "uri": _uri,
    "password": lambda value: True,  # a hint to forms, no rule
    "double": lambda value: True,  # a number's width, no rule on the value
}


def _format_check(check):  # noqa: ANN001, ANN202
    # A format asserts nothing about a value that is not a string (a null callback_url).
    return lambda value: not isinstance(value, str) or check(value)


for _name, _check in _FORMAT_CHECKS.items():
    _FORMATS.checks(_name, raises=(ValueError, DurationError))(_format_check(_check))


def _only_the_body_was_mutated(case) -> bool:
    meta = getattr(case, "meta", None)
    if meta is None:
        return False
    negative = {location for location, info in meta.components.items() if info.mode.is_negative}
    return negative == {ParameterLocation.BODY}


def _body_follows_the_document(case) -> bool:
    operation = case.operation
    try:
        document = operation.schema.raw_schema
        method = operation.method.lower()
        document["paths"][operation.path][method]["requestBody"]["content"][case.media_type]["schema"]
    except (AttributeError, KeyError, TypeError):
        return False
    if not isinstance(case.body, dict | list):
        return False
    # The body's schema referred to inside the document, so that its own references resolve there too.
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("paths", operation.path, method, "requestBody", "content", case.media_type, "schema")
    )
    registry = Registry().with_resource("urn:document", Resource.from_contents(document, DRAFT202012))
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:document#/{pointer}"}, registry=registry, format_checker=_FORMATS
    )
    return validator.is_valid(case.body)


# A schedule's cron expression and time zone are judged by a parser (croniter, the IANA database): the document
# names their formats, and the coverage phase's boundary strings ("000…0" as a zone) or explicit nulls are
# answered 400 naming the field, as they should be.
_SCHEDULE_FIELDS = {"cron", "interval", "timezone"}


def _unparsable_schedule(case, response) -> bool:
    if response.status_code != 400 or "/schedules" not in str(case.path):
        return False
    try:
        details = json.loads(response.content)["error"]["details"] or []
    except (ValueError, KeyError, TypeError):
        return False
    return bool(details) and all(d.get("path") in _SCHEDULE_FIELDS for d in details)


@schemathesis.check
def error_envelope(ctx, response, case) -> None:
    """A 4xx/5xx answer is `{"error": {"code": str, "message": str, "details": ...}}` and nothing else."""
    if response.status_code < 400 or _daphne_multipart_refusal(response):
        return
    content_type = _content_type(response)
    if not content_type.startswith("application/json"):
        raise AssertionError(f"{response.status_code} answered with Content-Type {content_type!r}, not JSON")
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} body is not JSON: {exc}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(error, dict)):
        raise AssertionError(f"{response.status_code} body is not the error envelope: {body!r:.300}")
    if set(error) != {"code", "message", "details"}:
        raise AssertionError(f"error envelope has keys {sorted(error)}, expected code, message, details")
    if not isinstance(error["code"], str) or not error["code"]:
        raise AssertionError(f"error.code is not a non-empty string: {error['code']!r}")
    if not isinstance(error["message"], str):
        raise AssertionError(f"error.message is not a string: {error['message']!r}")
