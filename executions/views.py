"""REST views of runs and executions: thin adapters over executions.services and executions.selectors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.redaction import Redactor
from accounts.selectors import account_for_user, secret_values
from core.api.openapi import NO_NUL, errors
from core.api.pagination import LimitOffsetPagination, paginated_response
from core.api.views import ApiViewMixin, validated_body
from core.errors import Conflict, ValidationFailed
from executions import selectors, services
from executions.models import Execution, ExecutionStatus
from executions.serializers import (
    ExecutionStatusSerializer,
    LogRowSerializer,
    NodeRunSerializer,
    RetryRequestSerializer,
    RunRequestSerializer,
    RunResponseSerializer,
    log_row,
)
from flows.http import flow_id_or_404
from flows.selectors import flow_get


def _run_response(execution: Execution) -> dict[str, Any]:
    return {
        "execution_id": str(execution.id),
        "status": execution.status,
        "flow_id": execution.flow_id,
        "flow_version": execution.flow_version.version,
        "retry_of": str(execution.retry_of_id) if execution.retry_of_id else None,
    }


_ENDED = {409: "The execution has already ended."}


class FlowRunView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="flows_run",
        tags=["flows"],
        request=RunRequestSerializer,
        responses={
            201: RunResponseSerializer,
            200: OpenApiResponse(RunResponseSerializer, "A repeat of an earlier request (Idempotency-Key)."),
            **errors(
                {
                    409: "The flow has no version to run.",
                    422: "The Idempotency-Key already started a run of this flow with another input; "
                    "`error.details.execution_id` is that run.",
                }
            ),
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 200},
                OpenApiParameter.HEADER,
                required=False,
                description="1 to 200 characters. A repeat on the same flow with the same input within "
                "FLOWRUNNER_IDEMPOTENCY_TTL (default 24h) returns the first execution with 200; with another "
                "input it answers 422 idempotency_key_reused.",
            )
        ],
        summary="Start an execution of the flow's current version",
    )
    def post(self, request: Request, flow_id: str) -> Response:
        account = account_for_user(request.user)
        flow = flow_get(account=account, flow_id=flow_id_or_404(flow_id))
        body = validated_body(request, RunRequestSerializer, null_as_empty=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 200):
            raise ValidationFailed("Idempotency-Key must be 1 to 200 characters.")
        execution, created = services.execution_start(
            account=account,
            flow=flow,
            user=request.user,
            input=body.get("input") or {},
            idempotency_key=key,
            callback_url=body.get("callback_url"),
        )
        return Response(
            _run_response(execution), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class ExecutionListView(ApiViewMixin, APIView):
    pagination_class = LimitOffsetPagination

    @extend_schema(
        operation_id="executions_list",
        tags=["executions"],
        responses=ExecutionStatusSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "flow_id",
                {"type": "string", "pattern": NO_NUL},
                description="Only the executions of this flow.",
            ),
            OpenApiParameter(
                "status", str, enum=ExecutionStatus.values, description="Only the executions in this status."
            ),
            OpenApiParameter(
                "schedule_id",
                {"type": "string", "format": "uuid"},
                description="Only the executions this schedule started.",
            ),
        ],
        summary="List the account's executions, newest first",
    )
    def get(self, request: Request) -> Response:
        account = account_for_user(request.user)
        flow_id = request.query_params.get("flow_id")
        if flow_id is not None and "\x00" in flow_id:
            # PostgreSQL refuses NUL in text; no flow id contains one.
            raise ValidationFailed(
                "`flow_id` is not a valid flow id.",
                details=[{"path": "flow_id", "message": "NUL characters are not allowed."}],
            )
        queryset = selectors.execution_list(
            account=account,
            flow_id=flow_id,
            status=request.query_params.get("status"),
            schedule_id=request.query_params.get("schedule_id"),
        )
        return paginated_response(
            self, request, queryset, lambda page: [selectors.redacted_status(e) for e in page]
        )


class ExecutionDetailView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="executions_retrieve",
        tags=["executions"],
        responses=ExecutionStatusSerializer,
        summary="The ExecutionStatus of one execution",
    )
    def get(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        return Response(selectors.redacted_status(execution))

    @extend_schema(
        operation_id="executions_delete",
        tags=["executions"],
        responses={204: None, **errors(_ENDED)},
        summary="Cancel a queued or running execution",
        description="The same as POST /executions/{execution_id}/cancel: the execution is canceled, not "
        "removed, and stays readable.",
    )
    def delete(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        if not services.execution_cancel(execution=execution):
            raise Conflict(f"The execution has already ended ({execution.status}).")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ExecutionCancelView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="executions_cancel",
        tags=["executions"],
        request=None,
        responses={202: ExecutionStatusSerializer, **errors(_ENDED)},
        summary="Cancel a queued or running execution",
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        if not services.execution_cancel(execution=execution):
            raise Conflict(f"The execution has already ended ({execution.status}).")
        execution.refresh_from_db()
        return Response(selectors.redacted_status(execution), status=status.HTTP_202_ACCEPTED)


class ExecutionRetryView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="executions_retry",
        tags=["executions"],
        request=RetryRequestSerializer,
        responses={
            201: RunResponseSerializer,
            **errors({409: "Only a failed or canceled execution can be retried."}),
        },
        summary="Re-run a failed execution from its failed node, reusing the succeeded nodes' outputs",
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        body = validated_body(request, RetryRequestSerializer, null_as_empty=True)
        new = services.execution_retry(
            execution=execution,
            user=request.user,
            use_current_version=body["version"] == "current",
        )
        return Response(_run_response(new), status=status.HTTP_201_CREATED)


class ExecutionLogsView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="executions_logs",
        tags=["executions"],
        responses=LogRowSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "since",
                {"type": "integer", "minimum": 0, "maximum": 2**31},
                description="Only the events with a greater `seq`.",
            )
        ],
        summary="The execution's events as log lines, in seq order",
    )
    def get(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        raw = request.query_params.get("since", "0")
        try:
            since = int(raw)
            if since < 0 or since > 2**31:
                raise ValueError
        except ValueError:
            raise ValidationFailed(
                "`since` must be a non-negative integer.",
                details=[{"path": "since", "message": "expected a non-negative integer"}],
            )
        rows = [
            log_row(event) for event in selectors.execution_events(execution=execution, since=since)[:10_000]
        ]
        return Response(Redactor(secret_values(account=execution.account_id)).data(rows))


class ExecutionNodesView(ApiViewMixin, APIView):
    @extend_schema(
        operation_id="executions_nodes",
        tags=["executions"],
        responses=NodeRunSerializer(many=True),
        summary="Node runs: one row per attempt, in start order",
    )
    def get(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        return Response(NodeRunSerializer(selectors.execution_node_runs(execution=execution), many=True).data)
