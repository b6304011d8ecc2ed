"""Django admin for schedules (created and edited through the services, so beat's PeriodicTask follows) and
inbound hook triggers (listed, enabled or disabled, deleted: a secret is only ever shown by the API)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from accounts.admin_scope import AccountScopedAdmin, SuperuserOnlyAdmin, member_account_id
from core.errors import ApplicationError
from flows.models import Flow
from triggers import hooks, schedules, timing
from triggers.models import Schedule, Trigger


class ScheduleAdminForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ["flow", "cron", "interval", "timezone", "input", "enabled", "callback_url"]
        help_texts = {
            "cron": "Five fields (minute hour day-of-month month day-of-week), in the time zone below.",
            "interval": "Or a duration of at least 1s: 30s, 1m30s, 1h.",
        }

    def clean(self) -> dict:
        cleaned = super().clean()
        try:
            if bool(cleaned.get("cron")) == bool(cleaned.get("interval")):
                raise ValidationError("Give exactly one of cron or interval.")
            if cleaned.get("cron"):
                timing.cron_fields(cleaned["cron"])
            else:
                timing.interval_seconds(cleaned["interval"])
            timing.zone(cleaned.get("timezone") or "UTC")
        except ApplicationError as exc:
            raise ValidationError(exc.message)
        if not isinstance(cleaned.get("input"), dict | None):
            raise ValidationError("The input must be a JSON object.")
        return cleaned


@admin.register(Schedule)
class ScheduleAdmin(AccountScopedAdmin):
    form = ScheduleAdminForm
    list_display = ["id", "flow", "cron", "interval", "timezone", "enabled", "next_run_at", "last_run_at"]
    list_filter = ["enabled"]
    list_select_related = ["flow"]
    search_fields = ["id", "flow__id", "flow__name"]
    readonly_fields = ["next_run_at", "last_run_at", "last_execution", "created_at"]

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):  # noqa: ANN001, ANN201
        if db_field.related_model is Flow:
            flows = Flow.objects.filter(deleted_at__isnull=True)
            if not request.user.is_superuser:
                flows = flows.filter(account_id=member_account_id(request))
            kwargs["queryset"] = flows
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Schedule, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "cron": data.get("cron") or None,
            "interval": data.get("interval") or None,
            "timezone_name": data.get("timezone") or "UTC",
            "input": data.get("input") or {},
            "enabled": data.get("enabled", True),
            "callback_url": data.get("callback_url") or None,
        }
        if change:
            saved = schedules.schedule_update(schedule=Schedule.objects.get(pk=obj.pk), **fields)
        else:
            flow = data["flow"]
            saved = schedules.schedule_create(account=flow.account, flow=flow, user=request.user, **fields)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        schedules.schedule_delete(schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:  # noqa: ANN001
        for schedule in queryset:
            schedules.schedule_delete(schedule=schedule)


@admin.register(Trigger)
class TriggerAdmin(AccountScopedAdmin):
    list_display = ["id", "name", "flow", "enabled", "last_fired_at", "created_at"]
    list_filter = ["enabled"]
    list_select_related = ["flow"]
    search_fields = ["id", "name", "flow__id", "flow__name"]
    fields = ["id", "name", "flow", "enabled", "callback_url", "last_fired_at", "created_at"]
    readonly_fields = ["id", "name", "flow", "callback_url", "last_fired_at", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A trigger's secret is shown once, by POST /flows/{id}/triggers.
        return False

    def save_model(self, request: HttpRequest, obj: Trigger, form: forms.ModelForm, change: bool) -> None:
        hooks.trigger_update(trigger=obj, enabled=obj.enabled)


# django-celery-beat's own tables hold every account's schedules (and the reaper): superusers only. A schedule is
# edited above, which keeps its PeriodicTask in step.
for _model, _admin in [
    (PeriodicTask, beat_admin.PeriodicTaskAdmin),
    (IntervalSchedule, beat_admin.IntervalScheduleAdmin),
    (CrontabSchedule, beat_admin.CrontabScheduleAdmin),
    (SolarSchedule, beat_admin.SolarScheduleAdmin),
    (ClockedSchedule, beat_admin.ClockedScheduleAdmin),
]:
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(
        _model, type(f"SuperuserOnly{_model.__name__}Admin", (SuperuserOnlyAdmin, _admin), {})
    )
