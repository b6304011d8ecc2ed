"""Django admin for executions: read-only history (node runs, events) plus Cancel and Re-run actions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.admin_scope import ReadOnlyInlineMixin, member_account_id
from accounts.redaction import Redactor
from accounts.selectors import secret_values
from core.errors import ApplicationError
from executions import services
from executions.models import NODE_RUN_FIELDS, Execution, ExecutionEvent, NodeRun
from flows.admin import FlowAdmin
from flows.models import Flow

# An execution with a long loop has thousands of events; the page shows the latest ones (the API has all).
EVENT_LIMIT = 500


def pretty_json(value: Any, redactor: Redactor | None = None) -> str:
    if redactor:
        value = redactor.data(value)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', json.dumps(value, indent=2))


class ReadOnlyInline(ReadOnlyInlineMixin, admin.TabularInline):
    extra = 0
    show_change_link = False


class NodeRunInline(ReadOnlyInline):
    model = NodeRun
    fields = list(NODE_RUN_FIELDS)
    readonly_fields = fields
    ordering = ["id"]


class RecentEventsFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[ExecutionEvent]:
        queryset = super().get_queryset()
        floor = max(0, (self.instance.last_event_seq or 0) - EVENT_LIMIT)
        return queryset.filter(seq__gt=floor).order_by("seq")

    def _construct_form(self, i: int, **kwargs: Any):
        # Status events store the document unredacted (the API masks on the way out): so does this page, with
        # one Redactor for all rows.
        form = super()._construct_form(i, **kwargs)
        if not hasattr(self, "_redactor"):
            self._redactor = Redactor(secret_values(account=self.instance.account_id))
        form.instance._admin_redactor = self._redactor
        return form


class ExecutionEventInline(ReadOnlyInline):
    model = ExecutionEvent
    formset = RecentEventsFormSet
    fields = ["seq", "type", "node_id", "created_at", "summary"]
    readonly_fields = fields
    ordering = ["seq"]
    verbose_name_plural = f"events (the latest {EVENT_LIMIT})"

    @admin.display(description="payload")
    def summary(self, event: ExecutionEvent) -> str:
        payload = event.payload or {}
        body = payload.get(event.type) if isinstance(payload.get(event.type), dict) else payload
        redactor = getattr(event, "_admin_redactor", None)
        if redactor:
            body = redactor.data(body)
        return format_html("<code>{}</code>", json.dumps(body, separators=(", ", ": "))[:400])


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    """Executions are written only by the engine (executions.transitions): view, cancel, re-run."""

    list_display = ["id", "flow", "status", "progress_pct", "current_node", "created_at", "finished_at"]
    # RelatedOnly: a staff user's flow filter lists only flows of executions they can see (their account's).
    list_filter = ["status", ("flow", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id", "flow__id", "flow__name"]
    list_select_related = ["flow"]
    date_hierarchy = "created_at"
    inlines = [NodeRunInline, ExecutionEventInline]
    actions = ["cancel", "rerun"]
    fields = [
        "id",
        "account",
        "flow",
        "flow_version",
        "status",
        "progress",
        "current_node",
        "error",
        "input_json",
        "data_json",
        "results_json",
        "idempotency_key",
        "retry_of",
        "waiting_reason",
        "callback_url",
        "callback_attempts",
        "callback_delivered_at",
        "steps",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "last_event_seq",
    ]
    readonly_fields = fields

    @admin.display(description="progress", ordering="progress")
    def progress_pct(self, execution: Execution) -> str:
        return f"{execution.progress:.0f}%"

    def _redactor(self, execution: Execution) -> Redactor:
        # A script may have copied a secret into the document; the admin masks it as the API does. Kept on the
        # row object (one page, one request): the ModelAdmin itself is shared by every request's thread.
        redactor = getattr(execution, "_admin_redactor", None)
        if redactor is None:
            redactor = execution._admin_redactor = Redactor(secret_values(account=execution.account_id))
        return redactor

    @admin.display(description="input")
    def input_json(self, execution: Execution) -> str:
        return pretty_json(execution.input, self._redactor(execution))

    @admin.display(description="document (data)")
    def data_json(self, execution: Execution) -> str:
        return pretty_json(execution.data, self._redactor(execution))

    @admin.display(description="results")
    def results_json(self, execution: Execution) -> str:
        return pretty_json(execution.results, self._redactor(execution))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        # Staff who are not superusers see their own account's executions only: accounts are tenants.
        account_id = member_account_id(request)
        return queryset.filter(account_id=account_id) if account_id else queryset.none()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # executions start through a flow (API, dashboard, or the flows admin's Run action)

    def has_change_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return False  # history stays

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Cancel and re-run change the run's state, so they need the `change` permission in the auth sense,
        although this admin edits no field."""
        return request.user.has_perm("executions.change_execution")

    @admin.action(description="Cancel selected executions", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        canceled = [str(e.id) for e in queryset if services.execution_cancel(execution=e)]
        skipped = queryset.count() - len(canceled)
        if canceled:
            self.message_user(request, f"Canceled {len(canceled)}: {', '.join(canceled)}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} execution(s) had already ended.", messages.WARNING)

    @admin.action(description="Re-run from failure (failed or canceled executions)", permissions=["operate"])
    def rerun(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        executions = queryset.select_related("flow", "flow_version", "account")
        start_each(
            self,
            request,
            executions,
            lambda execution: services.execution_retry(execution=execution, user=request.user),
            done="Re-run started",
            refused="Not re-run",
        )


def start_each(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Any],
    start: Callable[[Any], Execution],
    *,
    done: str,
    refused: str,
) -> None:
    """An admin action that starts one execution per selected object: what started and what the services
    refused (with their reason), in two messages."""
    started, not_started = [], []
    for obj in objects:
        try:
            execution = start(obj)
        except ApplicationError as exc:
            not_started.append(f"{obj.pk} ({exc.describe()})")
            continue
        started.append(f"{obj.pk} → {execution.id}")
    if started:
        model_admin.message_user(request, f"{done} {len(started)}: {'; '.join(started)}.", messages.SUCCESS)
    if not_started:
        model_admin.message_user(request, f"{refused}: {'; '.join(not_started)}.", messages.WARNING)


# Running a flow is an execution's business: the flows admin (a floor below) gets its Run action here.
admin.site.unregister(Flow)


@admin.register(Flow)
class FlowRunAdmin(FlowAdmin):
    actions = [*FlowAdmin.actions, "run"]

    @admin.action(description="Run selected flows (empty input)", permissions=["run"])
    def run(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        flows = queryset.select_related("account", "current_version")
        start_each(
            self,
            request,
            flows,
            lambda flow: services.execution_start(
                account=flow.account, flow=flow, user=request.user, input={}
            )[0],
            done="Started",
            refused="Not started",
        )

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("executions.add_execution")
