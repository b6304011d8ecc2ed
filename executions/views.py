"""REST views of runs and executions: thin adapters over executions.services and executions.selectors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import ApiViewMixin
from accounts.selectors import account_for_user
from executions import selectors, services
from executions.models import Execution
from executions.serializers import (
    ExecutionStatusSerializer,
    LogRowSerializer,
    NodeRunSerializer,
    RetryRequestSerializer,
    RunRequestSerializer,
    RunResponseSerializer,
    log_row,
)
from flowrunner.exceptions import Conflict, ValidationFailed
from flowrunner.pagination import LimitOffsetPagination
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


class FlowRunView(ApiViewMixin, APIView):
    @extend_schema(
        request=RunRequestSerializer,
        responses={201: RunResponseSerializer, 200: RunResponseSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
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
        body = RunRequestSerializer(data=request.data if request.data is not None else {})
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 200):
            raise ValidationFailed("Idempotency-Key must be 1 to 200 characters.")
        execution, created = services.execution_start(
            account=account,
            flow=flow,
            user=request.user,
            input=body.validated_data.get("input") or {},
            idempotency_key=key,
        )
        return Response(
            _run_response(execution), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class ExecutionListView(ApiViewMixin, APIView):
    @extend_schema(
        responses=ExecutionStatusSerializer(many=True),
        parameters=[
            OpenApiParameter("flow_id", str, required=False),
            OpenApiParameter(
                "status", str, required=False, enum=["queued", "running", "completed", "failed", "canceled"]
            ),
            OpenApiParameter("limit", int, required=False),
            OpenApiParameter("offset", int, required=False),
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
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response([selectors.redacted_status(execution) for execution in page])


class ExecutionDetailView(ApiViewMixin, APIView):
    @extend_schema(responses=ExecutionStatusSerializer, summary="The ExecutionStatus of one execution")
    def get(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        return Response(selectors.redacted_status(execution))

    @extend_schema(responses={204: None}, summary="Cancel a queued or running execution")
    def delete(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        if not services.execution_cancel(execution=execution):
            raise Conflict(f"The execution has already ended ({execution.status}).")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ExecutionCancelView(ApiViewMixin, APIView):
    @extend_schema(request=None, responses={202: ExecutionStatusSerializer}, summary="Cancel an execution")
    def post(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        if not services.execution_cancel(execution=execution):
            raise Conflict(f"The execution has already ended ({execution.status}).")
        execution.refresh_from_db()
        return Response(selectors.redacted_status(execution), status=status.HTTP_202_ACCEPTED)


class ExecutionRetryView(ApiViewMixin, APIView):
    @extend_schema(
        request=RetryRequestSerializer,
        responses={201: RunResponseSerializer},
        summary="Re-run a failed execution from its failed node, reusing the succeeded nodes' outputs",
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        body = RetryRequestSerializer(data=request.data if request.data is not None else {})
        body.is_valid(raise_exception=True)
        new = services.execution_retry(
            execution=execution,
            user=request.user,
            use_current_version=body.validated_data["version"] == "current",
        )
        return Response(_run_response(new), status=status.HTTP_201_CREATED)


class ExecutionLogsView(ApiViewMixin, APIView):
    @extend_schema(
        responses=LogRowSerializer(many=True),
        parameters=[
            OpenApiParameter("since", int, required=False, description="only events with seq > since")
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
        from accounts.redaction import Redactor
        from accounts.selectors import secret_values

        return Response(Redactor(secret_values(account=execution.account_id)).data(rows))


class ExecutionNodesView(ApiViewMixin, APIView):
    @extend_schema(
        responses=NodeRunSerializer(many=True), summary="Node runs: one row per attempt, in start order"
    )
    def get(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get(account=account_for_user(request.user), execution_id=execution_id)
        return Response(NodeRunSerializer(selectors.execution_node_runs(execution=execution), many=True).data)
