"""The JSON parser every API view reads bodies with: a nesting bomb is a 400, and the value must be storable."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, parsers

from core import json as json_limits
from core.errors import ValidationFailed


def check_storable_json(value: Any, *, max_depth: int = json_limits.MAX_DEPTH) -> None:
    """ValidationFailed unless `value` can be stored in PostgreSQL and handed to scripts as it is (see
    core.json.storable_problem)."""
    problem = json_limits.storable_problem(value, max_depth=max_depth)
    if problem is not None:
        path, message = problem
        raise ValidationFailed("The request body is not valid.", details=[{"path": path, "message": message}])


class SafeJSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus: a nesting bomb is a 400 (not a RecursionError, i.e. a 500), and the parsed
    value must be storable (see check_storable_json)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                f"JSON parse error - nested more than {json_limits.MAX_DEPTH} levels deep"
            )
        check_storable_json(data)
        return data
