"""Schedule (a flow fired by beat), its firings (one per scheduled time), inbound hook triggers and deliveries."""

import uuid

from django.conf import settings
from django.db import models

from accounts.models import Account
from executions.models import Execution
from flows.models import Flow


class Schedule(models.Model):
    """A flow run on a cron expression (in `timezone`) or every `interval_seconds`; beat fires its PeriodicTask."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="schedules")
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="schedules")
    cron = models.CharField(max_length=200, blank=True, default="")
    # As given (`30s`, `1m30s`); `interval_seconds` is what the grid of scheduled times uses.
    interval = models.CharField(max_length=64, blank=True, default="")
    interval_seconds = models.FloatField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    input = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    callback_url = models.CharField(max_length=2048, null=True, blank=True)
    # The origin of the interval grid: scheduled times are anchor + k·interval.
    anchor_at = models.DateTimeField()
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_execution = models.ForeignKey(
        Execution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["account", "flow"])]

    def __str__(self) -> str:
        return f"{self.flow_id} {self.cron or 'every ' + self.interval}"


class ScheduleFiring(models.Model):
    """One scheduled time of a schedule, taken once: the unique row is what stops a second beat, or a
    redelivered message, from starting a second run."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    scheduled_for = models.DateTimeField()
    execution = models.ForeignKey(
        Execution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-scheduled_for"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "scheduled_for"], name="unique_schedule_firing")
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.scheduled_for.isoformat()}"


class Trigger(models.Model):
    """An inbound webhook of a flow; its secret is stored encrypted (the signature check needs it back)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="triggers")
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="triggers")
    name = models.CharField(max_length=200, blank=True, default="")
    secret_ciphertext = models.TextField()
    enabled = models.BooleanField(default=True)
    callback_url = models.CharField(max_length=2048, null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["account", "flow"])]

    def __str__(self) -> str:
        return f"{self.flow_id} hook {self.name or self.id}"


class HookDelivery(models.Model):
    """A signed delivery already accepted, remembered by its signature so that a replay starts nothing."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="deliveries")
    signature = models.CharField(max_length=64)
    execution = models.ForeignKey(
        Execution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trigger", "signature"], name="unique_hook_delivery")]
        indexes = [models.Index(fields=["trigger", "created_at"])]

    def __str__(self) -> str:
        return f"{self.trigger_id} {self.signature[:12]}"
