"""Execution, NodeRun and ExecutionEvent: the durable record of a run (PostgreSQL is the truth)."""

import enum
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.fields.json import KT

from accounts.models import Account
from flows.models import Flow, FlowVersion


class ExecutionStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    # Sets of statuses, not statuses: nonmember keeps them out of the choices.
    ACTIVE = enum.nonmember(frozenset({"queued", "running"}))
    TERMINAL = enum.nonmember(frozenset({"completed", "failed", "canceled"}))


TERMINAL_EXECUTION_STATUSES = ExecutionStatus.TERMINAL


def api_trigger() -> dict[str, str]:
    """What started an execution when nothing else is said: a client's run request."""
    return {"type": "api"}


class WaitingReason(models.TextChoices):
    """Why a queued execution has not started: a concurrency bound is reached (admission starts it later)."""

    FLOW_CONCURRENCY = "flow_concurrency"
    ACCOUNT_CONCURRENCY = "account_concurrency"


class NodeRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"


TERMINAL_NODE_STATUSES = frozenset({"succeeded", "failed", "timed_out", "canceled"})
OPEN_NODE_STATUSES = frozenset(NodeRunStatus.values) - TERMINAL_NODE_STATUSES

# What describes one node run attempt, in the order the API (NodeRunSerializer) and the admin show it.
NODE_RUN_FIELDS = (
    "node_id", "batch_index", "attempt", "status", "action", "error", "queued_at", "started_at", "finished_at",
    "worker",
)  # fmt: skip


class Execution(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Every index here is written again whenever an update cannot be HOT; the composite indexes below lead with
    # the account, so the foreign keys to the account and the flow carry no index of their own (a flow's own,
    # for its deletion, is a plain one below: Django's would add a second, pattern-matching copy of it).
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="executions", db_index=False)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="executions", db_index=False)
    flow_version = models.ForeignKey(FlowVersion, on_delete=models.PROTECT, related_name="executions")
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    current_node = models.CharField(max_length=200, blank=True, default="")
    input = models.JSONField(default=dict, blank=True)
    data = models.JSONField(default=dict, blank=True)
    node_outputs = models.JSONField(default=dict, blank=True)
    results = models.JSONField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    # What started it: {"type": "api"}, {"type": "schedule", "schedule_id", "scheduled_for"},
    # {"type": "hook", "trigger_id"} or {"type": "retry", "retry_of"}.
    trigger = models.JSONField(default=api_trigger)
    steps = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_event_seq = models.PositiveIntegerField(default=0)
    # Admission: a queued execution held back by a concurrency bound has a reason and no node run yet; it starts
    # at `start_node`. Every other queued or running execution holds a slot.
    waiting_reason = models.CharField(max_length=32, choices=WaitingReason.choices, blank=True, default="")
    start_node = models.CharField(max_length=200, blank=True, default="")
    # Completion callback: where the ExecutionStatus is POSTed once the run ends, and how that went.
    callback_url = models.CharField(max_length=2000, blank=True, default="")
    callback_attempts = models.PositiveIntegerField(default=0)
    callback_delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "status"]),
            models.Index(fields=["account", "flow"]),
            models.Index(fields=["flow"], name="execution_flow"),
            # `/executions?schedule_id=` and a schedule's own history.
            models.Index(F("account"), KT("trigger__schedule_id"), name="execution_schedule"),
            # The slots held: few rows (at most the bounds), counted on every admission.
            models.Index(
                fields=["account", "flow"],
                condition=models.Q(status__in=sorted(ExecutionStatus.ACTIVE), waiting_reason=""),
                name="execution_holding_slot",
            ),
            # The waiting line, FIFO per flow.
            models.Index(
                fields=["account", "flow", "created_at"],
                condition=models.Q(status="queued") & ~models.Q(waiting_reason=""),
                name="execution_waiting",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="unique_execution_idempotency_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.flow_id} {self.id} ({self.status})"


class NodeRun(models.Model):
    """One attempt of one node (or of one batch of a batch node)."""

    # Indexed as the first column of (execution, node_id, batch_index).
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="node_runs", db_index=False
    )
    node_id = models.CharField(max_length=200)
    # A batch part points at its batch node's run; the parent counts its finished parts so that a part's finish
    # never reads its siblings, and `parts_total` set once is what makes a redelivered start create nothing.
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="parts", db_index=False
    )
    parts_total = models.PositiveIntegerField(null=True, blank=True)
    parts_done = models.PositiveIntegerField(default=0)
    batch_index = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    step = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=NodeRunStatus.choices, default=NodeRunStatus.QUEUED)
    action = models.CharField(max_length=200, blank=True, default="")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    task_id = models.CharField(max_length=255, blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="")
    queued_at = models.DateTimeField(auto_now_add=True)
    # When a retrying attempt may run (its Celery countdown).
    not_before = models.DateTimeField(null=True, blank=True)
    # Set only while a wait/delay node is paused: the one marker the reaper resumes (a retry never has it).
    wait_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        # Partial where the lookups allow it: a run that finishes, or is no batch part, adds nothing to the indexes
        # only the reaper (open runs) and batches (parts) read. Each finish writes two runs, so this is per node.
        indexes = [
            models.Index(
                fields=["status", "queued_at"],
                condition=models.Q(status__in=sorted(OPEN_NODE_STATUSES)),
                name="noderun_open",
            ),
            models.Index(fields=["execution", "node_id", "batch_index"]),
            models.Index(
                fields=["parent", "status"], condition=models.Q(parent__isnull=False), name="noderun_part"
            ),
        ]

    def __str__(self) -> str:
        part = "" if self.batch_index is None else f"[{self.batch_index}]"
        return f"{self.node_id}{part} #{self.attempt} ({self.status})"


class ExecutionEvent(models.Model):
    """Gapless per-execution sequence of status/node/log events: the logs endpoint and WebSocket replay."""

    # Indexed as the first column of (execution, seq).
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=16)
    node_id = models.CharField(max_length=200, blank=True, default="")
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["execution", "seq"]
        constraints = [models.UniqueConstraint(fields=["execution", "seq"], name="unique_event_seq")]

    def __str__(self) -> str:
        return f"{self.execution_id}#{self.seq} {self.type}"
