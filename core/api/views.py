"""What every JSON API view has: the request body size limit and the hardened JSON parser."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions

from core.api.parsers import SafeJSONParser
from core.errors import PayloadTooLarge


def body_too_large(limit: int | None = None) -> PayloadTooLarge:
    """413 with the limit in `details`, wherever the body was found too large (DRF view or Django handler)."""
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
