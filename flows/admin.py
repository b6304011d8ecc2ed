"""Django admin for flows: upload YAML (validated, problems shown by line), browse versions read-only."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import construct_change_message
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.admin_scope import AccountScopedAdmin, ReadOnlyInlineMixin
from accounts.selectors import member_account
from flows import services
from flows.dsl.spec import FlowValidationError, Problem
from flows.models import Flow, FlowVersion


def problem_text(problem: Problem) -> str:
    """`line L, column C: path: message`, leaving out what the problem does not know."""
    parts = []
    if problem.line is not None:
        parts.append(
            f"line {problem.line}" + (f", column {problem.column}" if problem.column is not None else "")
        )
    if problem.path:
        parts.append(problem.path)
    parts.append(problem.message)
    return ": ".join(parts)


class FlowAdminForm(forms.ModelForm):
    """The flow's name and account plus its YAML text; the text is validated exactly as the API does."""

    name = forms.CharField(
        required=False,
        max_length=Flow._meta.get_field("name").max_length,
        help_text="Leave blank to use metadata.name from the YAML.",
    )
    content = forms.CharField(
        label="YAML",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 30, "cols": 100, "style": "font-family: monospace"}),
        help_text="Saving a changed text creates a new version.",
    )

    class Meta:
        model = Flow
        fields = ["account", "name"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.current_version if self.instance.pk else None
        if current is not None:
            self.fields["content"].initial = current.content

    def clean(self) -> dict:
        cleaned = super().clean()
        content = cleaned.get("content")
        if content is not None:
            try:
                services.flow_parse(content=content, name=cleaned.get("name") or None)
            except FlowValidationError as exc:
                self.add_error("content", [ValidationError(problem_text(p)) for p in exc.problems])
        return cleaned


class FlowVersionInline(ReadOnlyInlineMixin, admin.StackedInline):
    model = FlowVersion
    fk_name = "flow"
    extra = 0
    ordering = ["-number"]
    fields = ["number", "version", "created_at", "created_by", "content_text"]
    readonly_fields = fields
    classes = ["collapse"]

    @admin.display(description="YAML")
    def content_text(self, obj: FlowVersion) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.content)


@admin.register(Flow)
class FlowAdmin(AccountScopedAdmin):
    form = FlowAdminForm
    list_display = ["name", "id", "account", "current_label", "updated_at", "deleted_at"]
    list_filter = [("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "name", "description"]
    list_select_related = ["account", "current_version"]
    inlines = [FlowVersionInline]
    actions = ["soft_delete"]

    @admin.display(description="version", ordering="current_version__number")
    def current_label(self, obj: Flow) -> str:
        return obj.current_version.version if obj.current_version else "-"

    def get_fields(self, request: HttpRequest, obj: Flow | None = None) -> list[str]:
        fields = ["account", "name", "content"]
        if obj is not None:
            fields = ["id", *fields, "description", "created_at", "updated_at", "deleted_at"]
        elif not request.user.is_superuser:
            fields.remove("account")  # created in the staff user's own account
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Flow | None = None) -> list[str]:
        if obj is None:
            return []
        # A flow never moves between accounts; description comes from metadata.description.
        return ["id", "account", "description", "created_at", "updated_at", "deleted_at"]

    def save_form(self, request: HttpRequest, form: FlowAdminForm, change: bool) -> Flow:
        # Writes go through the services (new version, ids, spec), never through ModelForm.save().
        data = form.cleaned_data
        name = data.get("name") or None
        try:
            if change:
                return services.flow_update(
                    flow=form.instance,
                    user=request.user,
                    content=data["content"],
                    name=name if "name" in form.changed_data else None,
                )
            account = data.get("account") or member_account(request.user)
            return services.flow_create(
                account=account, user=request.user, content=data["content"], name=name
            )
        except FlowValidationError as exc:  # the form validated this text; only a race could get here
            raise ValidationError([problem_text(p) for p in exc.problems])

    def save_model(self, request: HttpRequest, obj: Flow, form: FlowAdminForm, change: bool) -> None:
        pass  # save_form already saved through the services

    def save_related(self, request: HttpRequest, form: FlowAdminForm, formsets, change: bool) -> None:
        pass  # no many-to-many fields, and the versions inline is read-only

    def construct_change_message(
        self, request: HttpRequest, form: FlowAdminForm, formsets, add: bool
    ) -> list:
        # The versions inline is never saved, so its formsets have nothing to report.
        return construct_change_message(form, [], add)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Only a superuser picks the account; other staff need one of their own to create in.
        has_account = request.user.is_superuser or member_account(request.user) is not None
        return has_account and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Flow | None = None) -> bool:
        # A deleted flow takes no new versions (the services refuse); it stays viewable with its history.
        if obj is not None and obj.deleted_at is not None:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Flow | None = None) -> bool:
        return False  # a hard delete would drop the history; the soft_delete action is the way

    @admin.action(description="Delete selected flows (soft: history stays)", permissions=["change"])
    def soft_delete(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        count = 0
        for flow in queryset.filter(deleted_at__isnull=True):
            services.flow_delete(flow=flow)
            count += 1
        self.message_user(request, f"{count} flow(s) deleted.", messages.SUCCESS)


@admin.register(FlowVersion)
class FlowVersionAdmin(AccountScopedAdmin):
    """Versions are immutable: view only."""

    account_lookup = "flow__account"
    list_display = ["flow", "number", "version", "created_at", "created_by"]
    list_select_related = ["flow", "created_by"]
    search_fields = ["flow__id", "flow__name", "version"]
    fields = ["flow", "number", "version", "created_at", "created_by", "content_text", "spec_text"]
    readonly_fields = fields

    @admin.display(description="YAML")
    def content_text(self, obj: FlowVersion) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.content)

    @admin.display(description="Parsed spec")
    def spec_text(self, obj: FlowVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.spec, indent=2, sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: FlowVersion | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: FlowVersion | None = None) -> bool:
        return False
