"""DRF plumbing for the flows API: raw YAML bodies in, YAML text out, flow ids that cannot exist refused."""

from __future__ import annotations

from typing import Any

import yaml
from django.conf import settings
from rest_framework import exceptions, negotiation, parsers, renderers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.views import BodyLimitMixin, SafeJSONParser  # noqa: F401 - re-exported for the flows views
from core.errors import NotFound, ValidationFailed
from flows.models import Flow

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
YAML_MEDIA_TYPES = [parser.media_type for parser in YAML_PARSERS]


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


class StrictFormatNegotiation(negotiation.DefaultContentNegotiation):
    """`?format=` must name one of the view's formats: DRF ignores an empty one and answers 404 for another."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None):
        name = self.settings.URL_FORMAT_OVERRIDE
        value = request.query_params.get(name) if name else None
        formats = [renderer.format for renderer in renderers]
        if value is not None and value not in formats:
            expected = f"one of {', '.join(formats)}"
            raise ValidationFailed(
                f"`{name}` must be {expected}.", details=[{"path": name, "message": f"expected {expected}"}]
            )
        return super().select_renderer(request, renderers, format_suffix)


class JsonErrorsMixin:
    """Errors stay in the JSON envelope even when the client asked for YAML."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and response.status_code >= 400:
            if isinstance(getattr(request, "accepted_renderer", None), YamlTextRenderer):
                request.accepted_renderer = renderers.JSONRenderer()
                request.accepted_media_type = request.accepted_renderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


def flow_id_or_404(flow_id: str) -> str:
    """A path `{flow_id}` that cannot name a stored flow (a NUL, which PostgreSQL refuses in text, or longer
    than the column) answers exactly like a missing flow instead of reaching the database."""
    if "\x00" in flow_id or len(flow_id) > Flow._meta.get_field("id").max_length:
        raise NotFound("Flow not found.")
    return flow_id
