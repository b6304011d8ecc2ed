"""What every JSON API view has: the request body size limit, the hardened JSON parser, the checked body."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.serializers import Serializer

from core.api.parsers import SafeJSONParser
from core.errors import PayloadTooLarge


def body_too_large(limit: int | None = None) -> PayloadTooLarge:
    """413 with the limit in `details`, wherever the body was found too large (DRF view or Django handler)."""
    limit = settings.FLOWRUNNER_MAX_BODY_BYTES if limit is None else limit
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.", details={"limit": limit})


def validated_body(
    request: Request, serializer_class: type[Serializer], *, null_as_empty: bool = False
) -> Any:
    """The request body checked by `serializer_class`: its validated data, or 400 with every problem. With
    `null_as_empty`, a JSON `null` body stands for `{}` (an endpoint whose body is all optional)."""
    data = {} if null_as_empty and request.data is None else request.data
    body = serializer_class(data=data)
    body.is_valid(raise_exception=True)
    return body.validated_data


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
