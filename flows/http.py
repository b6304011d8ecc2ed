"""DRF plumbing for the flows API: raw YAML bodies in, YAML text out, and the request body size limit."""

from __future__ import annotations

from typing import Any

import yaml
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, parsers, renderers
from rest_framework.request import Request
from rest_framework.response import Response

from flowrunner.exceptions import PayloadTooLarge

YAML_MEDIA_TYPE = "application/yaml"


class YamlTextParser(parsers.BaseParser):
    """A raw YAML body is the flow text itself: parsed to `{"content": text}`, like the JSON form's field."""

    media_type = YAML_MEDIA_TYPE

    def parse(self, stream, media_type=None, parser_context=None) -> dict[str, Any]:
        charset = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            return {"content": stream.read().decode(charset)}
        except (UnicodeDecodeError, LookupError) as exc:
            raise exceptions.ParseError(f"The YAML body is not valid {charset} text: {exc}")


class XYamlTextParser(YamlTextParser):
    media_type = "application/x-yaml"


class TextYamlTextParser(YamlTextParser):
    media_type = "text/yaml"


YAML_PARSERS = [YamlTextParser, XYamlTextParser, TextYamlTextParser]


class YamlTextRenderer(renderers.BaseRenderer):
    """Renders a flow's YAML text verbatim; anything else (a dict) is dumped as YAML."""

    media_type = YAML_MEDIA_TYPE
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        if isinstance(data, str):
            return data.encode(self.charset)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode(self.charset)


class BodyLimitMixin:
    """Rejects a body over FLOWRUNNER_MAX_BODY_BYTES with 413 before any parser reads it.

    DRF parsers read the request stream directly, skipping Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so the
    body is read here through `HttpRequest.body` (checks Content-Length and the buffered size), then measured.
    """

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        limit = settings.FLOWRUNNER_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("The Content-Length header is not a number.")
        if declared > limit:
            raise _too_large(limit)
        try:
            body = request._request.body
        except RequestDataTooBig:
            raise _too_large(limit)
        if len(body) > limit:
            raise _too_large(limit)


class JsonErrorsMixin:
    """Errors stay in the JSON envelope even when the client asked for YAML."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and response.status_code >= 400:
            if isinstance(getattr(request, "accepted_renderer", None), YamlTextRenderer):
                request.accepted_renderer = renderers.JSONRenderer()
                request.accepted_media_type = request.accepted_renderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.", details={"limit": limit})
