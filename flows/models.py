"""Flow (a named, versioned YAML graph owned by an account) and FlowVersion (one uploaded text, parsed)."""

from django.conf import settings
from django.db import models

from accounts.models import Account


class Flow(models.Model):
    id = models.CharField(primary_key=True, max_length=80)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="flows")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    current_version = models.ForeignKey(
        "FlowVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "deleted_at"])]

    def __str__(self) -> str:
        return self.name


class FlowVersion(models.Model):
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    version = models.CharField(max_length=64)
    content = models.TextField()
    spec = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["flow", "number"], name="unique_flow_version_number")]

    def __str__(self) -> str:
        return f"{self.flow_id} v{self.version}"
