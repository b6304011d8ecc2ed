"""REST plumbing shared by every API view: a hardened JSON parser and the request body size limit."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, parsers

from flowrunner.exceptions import PayloadTooLarge, ValidationFailed

# Nesting allowed in a JSON body, as in flow YAML (flows.dsl.yamltree.MAX_DEPTH): the run input becomes the
# document that workers copy, redact and store recursively, so a deeper value would fail far from here.
MAX_JSON_DEPTH = 100
# Integers a script (IEEE doubles in V8), PostgreSQL's jsonb consumers and the Go original all handle.
MAX_JSON_INT = 2**63 - 1
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _problem(path: str, message: str) -> ValidationFailed:
    return ValidationFailed("The request body is not valid.", details=[{"path": path, "message": message}])


def check_storable_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """400 unless `value` can be stored in PostgreSQL and handed to scripts as it is: at most `max_depth`
    levels, no NUL character or lone surrogate in any string or key, integers within 64 bits. Iterative, so
    a hostile value cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= max_depth:
                raise _problem(path, f"nested more than {max_depth} levels deep")
            for key, child in item.items():
                _check_text(key, path or "(key)")
                stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, list):
            if depth >= max_depth:
                raise _problem(path, f"nested more than {max_depth} levels deep")
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_JSON_INT:
            raise _problem(path, "integer out of range: at most 64 bits")


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise _problem(path, "NUL characters are not allowed.")
    if _LONE_SURROGATE.search(text):
        raise _problem(path, "Unpaired surrogate characters are not allowed.")


class SafeJSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus: a nesting bomb is a 400 (not a RecursionError, i.e. a 500), and the parsed
    value must be storable (see check_storable_json)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep")
        check_storable_json(data)
        return data


def body_too_large(limit: int | None = None) -> PayloadTooLarge:
    limit = settings.FLOWRUNNER_MAX_BODY_BYTES if limit is None else limit
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.", details={"limit": limit})


class BodyLimitMixin:
    """Rejects a body over FLOWRUNNER_MAX_BODY_BYTES with 413 before any parser reads it.

    DRF parsers read the request stream directly, skipping Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so the
    body is read here through `HttpRequest.body` (checks Content-Length and the buffered size), then measured.
    Runs after authentication: an anonymous caller of a protected view gets its 401 without a read.
    """

    def initial(self, request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        limit = settings.FLOWRUNNER_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("The Content-Length header is not a number.")
        if declared > limit:
            raise body_too_large(limit)
        try:
            body = request._request.body
        except RequestDataTooBig:
            raise body_too_large(limit)
        if len(body) > limit:
            raise body_too_large(limit)


class ApiViewMixin(BodyLimitMixin):
    """What every JSON API view of FlowRunner has: the body limit and the hardened JSON parser."""

    parser_classes = [SafeJSONParser]
