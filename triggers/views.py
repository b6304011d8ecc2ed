"""REST views of schedules, hook triggers and the hook endpoint: thin adapters over the services."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_for_user
from accounts.throttling import client_ip
from core.api.openapi import errors, json_object
from core.api.pagination import LimitOffsetPagination, paginated_response
from core.api.views import ApiViewMixin, BodyLimitMixin, validated_body
from flows.http import flow_id_or_404
from flows.selectors import flow_get
from triggers import hooks, schedules, selectors
from triggers.serializers import (
    HookAcceptedSerializer,
    ScheduleCreateSerializer,
    ScheduleSerializer,
    ScheduleUpdateSerializer,
    TriggerCreatedSerializer,
    TriggerSerializer,
    TriggerWriteSerializer,
)

_SCHEDULE_INVALID = {
    400: "Not exactly one of `cron` or `interval`, a cron expression or duration that does not parse, an "
    "interval under 1s, an unknown time zone or a callback URL that is not allowed; `error.details` says which."
}


def _flow(request: Request, flow_id: str):  # noqa: ANN202
    return flow_get(account=account_for_user(request.user), flow_id=flow_id_or_404(flow_id))


class FlowScheduleListView(ApiViewMixin, APIView):
    pagination_class = LimitOffsetPagination

    @extend_schema(
        operation_id="schedules_list",
        tags=["schedules"],
        responses=ScheduleSerializer(many=True),
        summary="The flow's schedules, oldest first",
    )
    def get(self, request: Request, flow_id: str) -> Response:
        flow = _flow(request, flow_id)
        schedules = selectors.schedule_list(account=flow.account, flow=flow)
        return paginated_response(
            self, request, schedules, lambda page: ScheduleSerializer(page, many=True).data
        )

    @extend_schema(
        operation_id="schedules_create",
        tags=["schedules"],
        request=ScheduleCreateSerializer,
        responses={201: ScheduleSerializer, **errors(_SCHEDULE_INVALID)},
        summary="Run the flow on a cron expression or every interval",
    )
    def post(self, request: Request, flow_id: str) -> Response:
        flow = _flow(request, flow_id)
        data = validated_body(request, ScheduleCreateSerializer)
        schedule = schedules.schedule_create(
            account=flow.account,
            flow=flow,
            user=request.user,
            cron=data.get("cron"),
            interval=data.get("interval"),
            timezone_name=data.get("timezone") or "UTC",
            input=data.get("input"),
            enabled=data.get("enabled", True),
            callback_url=data.get("callback_url"),
        )
        return Response(ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="schedules_retrieve",
        tags=["schedules"],
        responses=ScheduleSerializer,
        summary="One schedule",
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(account=account_for_user(request.user), schedule_id=schedule_id)
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(
        operation_id="schedules_update",
        tags=["schedules"],
        request=ScheduleUpdateSerializer,
        responses={200: ScheduleSerializer, **errors(_SCHEDULE_INVALID)},
        summary="Change a schedule (the fields given)",
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(account=account_for_user(request.user), schedule_id=schedule_id)
        changes = dict(validated_body(request, ScheduleUpdateSerializer))
        if "timezone" in changes:
            changes["timezone_name"] = changes.pop("timezone")
        schedule = schedules.schedule_update(schedule=schedule, **changes)
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(
        operation_id="schedules_delete",
        tags=["schedules"],
        responses={204: None},
        summary="Delete a schedule (the runs it started stay)",
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(account=account_for_user(request.user), schedule_id=schedule_id)
        schedules.schedule_delete(schedule=schedule)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlowTriggerListView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="triggers_list",
        tags=["triggers"],
        responses=TriggerSerializer(many=True),
        summary="The flow's inbound hooks (without their secrets)",
    )
    def get(self, request: Request, flow_id: str) -> Response:
        flow = _flow(request, flow_id)
        rows = selectors.trigger_list(account=flow.account, flow=flow)[:1000]
        return Response(TriggerSerializer(rows, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="triggers_create",
        tags=["triggers"],
        request=TriggerWriteSerializer,
        responses={
            201: TriggerCreatedSerializer,
            **errors({400: "The body is not valid or the callback URL is not allowed."}),
        },
        summary="Create an inbound hook: its URL, and its secret shown only in this answer",
    )
    def post(self, request: Request, flow_id: str) -> Response:
        flow = _flow(request, flow_id)
        data = validated_body(request, TriggerWriteSerializer, null_as_empty=True)
        trigger, secret = hooks.trigger_create(account=flow.account, flow=flow, user=request.user, **data)
        data = TriggerCreatedSerializer(trigger, context={"request": request, "secret": secret}).data
        return Response(data, status=status.HTTP_201_CREATED)


class TriggerDetailView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="triggers_delete",
        tags=["triggers"],
        responses={204: None},
        summary="Delete an inbound hook: its URL answers 404 from then on",
    )
    def delete(self, request: Request, trigger_id: str) -> Response:
        trigger = selectors.trigger_get(account=account_for_user(request.user), trigger_id=trigger_id)
        hooks.trigger_delete(trigger=trigger)
        return Response(status=status.HTTP_204_NO_CONTENT)


_HOOK_HEADERS = [
    OpenApiParameter(
        "Authorization",
        {"type": "string", "pattern": "^[^\\u0000]*$"},
        OpenApiParameter.HEADER,
        description="`Bearer <secret>` (the trigger's secret). Either this or the signature.",
    ),
    OpenApiParameter(
        "X-FlowRunner-Signature",
        {"type": "string", "pattern": "^[^\\u0000]*$"},
        OpenApiParameter.HEADER,
        description="`sha256=<hex>`: HMAC-SHA256 keyed by the secret of the raw body, or of "
        "`<X-FlowRunner-Timestamp>.<raw body>` when that header is sent.",
    ),
    OpenApiParameter(
        "X-FlowRunner-Timestamp",
        {"type": "string", "pattern": "^[^\\u0000]*$"},
        OpenApiParameter.HEADER,
        description="Unix seconds, signed with the body; a delivery further than FLOWRUNNER_HOOK_TOLERANCE "
        "(5m) from the server's clock is refused (401), so it cannot be replayed later.",
    ),
    OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": 200},
        OpenApiParameter.HEADER,
        description="1 to 200 characters, scoped to the trigger: a repeat with the same body within "
        "FLOWRUNNER_IDEMPOTENCY_TTL returns the first execution (200).",
    ),
]


class HookView(BodyLimitMixin, APIView):
    """POST /hooks/{trigger_id} — an inbound delivery: no account credentials, the trigger's secret instead."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    # The raw bytes are what the signature covers: the service reads and parses the body itself.
    parser_classes: list = []

    def get_authenticate_header(self, request: Request) -> str:
        # A 401 names the scheme (the HMAC signature is the other way in).
        return 'Bearer realm="flowrunner hook"'

    @extend_schema(
        operation_id="hooks_receive",
        tags=["triggers"],
        request={"application/json": json_object("Any JSON object the server can store: the run's input.")},
        responses={
            202: HookAcceptedSerializer,
            200: OpenApiResponse(
                HookAcceptedSerializer,
                "A replayed signed delivery or a repeated Idempotency-Key: the first execution, nothing started.",
            ),
            **errors(
                {
                    400: "The body is not a JSON object.",
                    401: "No secret, a wrong one, a signature that does not match or a stale timestamp.",
                    404: "No such trigger, or it is disabled.",
                    422: "The Idempotency-Key already started a run with another body.",
                    429: "Too many deliveries to this trigger (FLOWRUNNER_HOOK_RATE_LIMIT per minute), or too "
                    "many failed authentications from this client.",
                }
            ),
        },
        parameters=_HOOK_HEADERS,
        auth=[],
        summary="Start a run of the trigger's flow with the JSON body as input",
    )
    def post(self, request: Request, trigger_id: str) -> Response:
        execution, created = hooks.hook_receive(
            trigger_id=trigger_id,
            delivery=hooks.Delivery(
                body=request._request.body,
                authorization=request.headers.get("Authorization"),
                signature=request.headers.get("X-FlowRunner-Signature"),
                timestamp=request.headers.get("X-FlowRunner-Timestamp"),
                idempotency_key=request.headers.get("Idempotency-Key"),
                ip=client_ip(request),
            ),
        )
        return Response(
            {"execution_id": str(execution.id)},
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )
