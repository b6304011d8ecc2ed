"""REST views of flows: thin adapters over flows.services and flows.selectors."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DataError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, renderers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from accounts.selectors import account_for_user
from core.api.openapi import errors
from core.api.views import validated_body
from core.errors import ValidationFailed
from flows import selectors, services
from flows.dsl.spec import FlowValidationError
from flows.http import (
    YAML_MEDIA_TYPE,
    YAML_MEDIA_TYPES,
    YAML_PARSERS,
    BodyLimitMixin,
    JsonErrorsMixin,
    SafeJSONParser,
    StrictFormatNegotiation,
    YamlTextRenderer,
    flow_id_or_404,
)
from flows.models import Flow
from flows.openapi import FLOW_DOCUMENT
from flows.serializers import FlowSerializer, FlowVersionSerializer, FlowWriteSerializer

logger = logging.getLogger(__name__)

# A YAML body is the flow itself (its schema is the parsed document's); JSON wraps the text in `content`.
_WRITE_BODY = {"application/json": FlowWriteSerializer, **dict.fromkeys(YAML_MEDIA_TYPES, FLOW_DOCUMENT)}
_INVALID = {400: "The body is malformed or the flow is not valid: `error.details` lists every problem."}
_FLOW = {
    (200, "application/json"): FlowSerializer,
    (200, YAML_MEDIA_TYPE): OpenApiResponse(FLOW_DOCUMENT, "With `Accept: application/yaml`: the YAML text."),
}


def _account(request: Request) -> Account:
    return account_for_user(request.user)


def _write_data(request: Request) -> dict[str, Any]:
    return validated_body(request, FlowWriteSerializer)


def _invalid_flow(exc: FlowValidationError) -> ValidationFailed:
    return ValidationFailed(message="The flow is not valid.", details=[p.to_json() for p in exc.problems])


def _unstorable_flow(exc: Exception) -> ValidationFailed:
    """A flow the parser let through but that cannot be stored or converted: a NUL or an unpaired surrogate
    from a YAML escape (`"\\0"`, which PostgreSQL refuses in text and jsonb), or an integer longer than Python
    converts (4300 digits). The DSL should report these itself; until it does, they are a 400, not a 500."""
    first_line = (str(exc).splitlines() or [""])[0][:200]
    logger.warning("flow refused after parsing: %s: %s", type(exc).__name__, first_line)
    return ValidationFailed(
        message="The flow is not valid.",
        details=[
            {
                "path": "",
                "line": None,
                "column": None,
                "message": "the flow contains a value that cannot be stored (a NUL character, an unpaired "
                "surrogate, or an integer with too many digits)",
            }
        ],
    )


class _FlowApiView(BodyLimitMixin, JsonErrorsMixin, generics.GenericAPIView):
    parser_classes = [SafeJSONParser, *YAML_PARSERS]
    renderer_classes = [renderers.JSONRenderer]
    content_negotiation_class = StrictFormatNegotiation


class FlowListView(_FlowApiView):
    serializer_class = FlowSerializer

    @extend_schema(operation_id="flows_list", tags=["flows"], responses={200: FlowSerializer(many=True)})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.flow_list(account=_account(request)))
        return self.get_paginated_response(FlowSerializer(page, many=True).data)

    @extend_schema(
        operation_id="flows_create",
        tags=["flows"],
        description="Body `{name?, content}` (content = YAML text), or raw YAML with a YAML content type.",
        request=_WRITE_BODY,
        responses={201: FlowSerializer, **errors(_INVALID)},
    )
    def post(self, request: Request) -> Response:
        data = _write_data(request)
        try:
            flow = services.flow_create(
                account=_account(request), user=request.user, content=data["content"], name=data.get("name")
            )
        except FlowValidationError as exc:
            raise _invalid_flow(exc)
        except (DataError, ValueError) as exc:
            raise _unstorable_flow(exc)
        return Response(FlowSerializer(flow).data, status=status.HTTP_201_CREATED)


class FlowDetailView(_FlowApiView):
    serializer_class = FlowSerializer
    # JSON first: a client that accepts anything gets JSON; `Accept: application/yaml` gets the text itself.
    renderer_classes = [renderers.JSONRenderer, YamlTextRenderer]

    def _flow(self, request: Request, flow_id: str) -> Flow:
        return selectors.flow_get(account=_account(request), flow_id=flow_id_or_404(flow_id))

    def get_object(self) -> Flow:
        # DRF's OPTIONS metadata asks for the object behind PUT; without this it asserts (no queryset).
        return self._flow(self.request, self.kwargs["flow_id"])

    def _flow_response(self, request: Request, flow: Flow) -> Response:
        if isinstance(request.accepted_renderer, YamlTextRenderer):
            return Response(flow.current_version.content if flow.current_version else "")
        return Response(FlowSerializer(flow).data)

    @extend_schema(
        operation_id="flows_retrieve",
        tags=["flows"],
        description="The flow; with `Accept: application/yaml` (or `?format=yaml`) its YAML text itself.",
        responses=_FLOW,
    )
    def get(self, request: Request, flow_id: str) -> Response:
        return self._flow_response(request, self._flow(request, flow_id))

    @extend_schema(
        operation_id="flows_update",
        tags=["flows"],
        description="Uploads a new version (unless the text is unchanged) and makes it current.",
        request=_WRITE_BODY,
        responses={**_FLOW, **errors(_INVALID)},
    )
    def put(self, request: Request, flow_id: str) -> Response:
        flow = self._flow(request, flow_id)
        data = _write_data(request)
        try:
            flow = services.flow_update(
                flow=flow, user=request.user, content=data["content"], name=data.get("name")
            )
        except FlowValidationError as exc:
            raise _invalid_flow(exc)
        except (DataError, ValueError) as exc:
            raise _unstorable_flow(exc)
        return self._flow_response(request, flow)

    @extend_schema(
        operation_id="flows_delete",
        tags=["flows"],
        description="Soft delete: the flow's history stays, new runs are refused.",
        responses={204: None},
    )
    def delete(self, request: Request, flow_id: str) -> Response:
        services.flow_delete(flow=self._flow(request, flow_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlowVersionListView(_FlowApiView):
    serializer_class = FlowVersionSerializer

    @extend_schema(
        operation_id="flows_versions",
        tags=["flows"],
        description="The flow's versions, newest first.",
        responses={200: FlowVersionSerializer(many=True)},
    )
    def get(self, request: Request, flow_id: str) -> Response:
        flow = selectors.flow_get(account=_account(request), flow_id=flow_id_or_404(flow_id))
        page = self.paginate_queryset(selectors.flow_versions(flow=flow))
        return self.get_paginated_response(FlowVersionSerializer(page, many=True).data)
