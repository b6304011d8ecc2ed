"""List envelope `{count, next, previous, results}` with `?limit=&offset=`, both validated (400 otherwise)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from rest_framework import pagination
from rest_framework.response import Response

from core.errors import ValidationFailed

# Digits only: int() would also take " 5", "+5", "5_0" and other scripts' digits, none of which the schema
# (an integer) describes.
_DIGITS = re.compile(r"[0-9]{1,10}")
# OFFSET is a bigint in PostgreSQL; past the int range nothing is left to list anyway.
MAX_OFFSET = 2**31 - 1


def _query_int(request: Any, name: str, *, minimum: int, maximum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if _DIGITS.fullmatch(raw) and minimum <= int(raw) <= maximum:
        return int(raw)
    raise ValidationFailed(
        f"`{name}` must be an integer from {minimum} to {maximum}.",
        details=[{"path": name, "message": f"expected an integer from {minimum} to {maximum}"}],
    )


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def get_limit(self, request: Any) -> int:
        limit = _query_int(request, self.limit_query_param, minimum=1, maximum=self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Any) -> int:
        return _query_int(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.default_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "Results to skip.",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            },
        ]

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": ["string", "null"], "format": "uri"}
        return {
            "type": "object",
            "required": ["count", "next", "previous", "results"],
            "properties": {
                "count": {"type": "integer", "minimum": 0, "description": "Results in the whole list."},
                "next": {**link, "description": "The next page, or null on the last one."},
                "previous": {**link, "description": "The previous page, or null on the first one."},
                "results": schema,
            },
        }


def paginated_response(
    view: Any, request: Any, queryset: Any, render: Callable[[Sequence[Any]], Any]
) -> Response:
    """One page of `queryset` (the view's pagination_class reads limit/offset) in the paginated envelope, its
    rows turned into JSON by `render`."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(render(page))
