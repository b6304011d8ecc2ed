"""Flows and executions for dashboard and admin tests, made through the services and transitions."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from executions import transitions
from executions.models import Execution, ExecutionStatus, NodeRunStatus
from executions.services import execution_start
from flows.services import flow_create

FLOW = """\
metadata:
  name: Greeting
  description: Says hello
nodes:
  greet:
    type: transform
    params:
      script: "return {greeting: 'hi ' + input.name};"
    next:
      success: shout
      error: report
  shout:
    type: transform
    params:
      script: "return {loud: shared.greeting.toUpperCase()};"
  report:
    type: log
    params:
      message: "failed"
"""


def make_flow(account, user, content: str = FLOW):
    return flow_create(account=account, user=user, content=content)


def make_execution(account, user, flow=None, input=None) -> Execution:
    """A queued execution whose first node run is queued (no task is sent: tests never commit)."""
    flow = flow or make_flow(account, user)
    execution, _ = execution_start(account=account, flow=flow, user=user, input=input or {"name": "ada"})
    return execution


@transaction.atomic
def fail(execution: Execution, *, node_error: str = "boom: TypeError") -> Execution:
    """Run the first node to failure and end the execution failed, as the engine would."""
    run = execution.node_runs.get()
    now = timezone.now()
    transitions.execution_transition(
        execution, to=ExecutionStatus.RUNNING, expected=[ExecutionStatus.QUEUED], started_at=now
    )
    transitions.node_run_transition(
        run,
        to=NodeRunStatus.RUNNING,
        expected=[NodeRunStatus.QUEUED],
        account_id=execution.account_id,
        started_at=now,
        worker="w1@host",
    )
    transitions.node_run_transition(
        run,
        to=NodeRunStatus.FAILED,
        expected=[NodeRunStatus.RUNNING],
        account_id=execution.account_id,
        finished_at=timezone.now(),
        error=node_error,
    )
    transitions.execution_transition(
        execution,
        to=ExecutionStatus.FAILED,
        expected=[ExecutionStatus.RUNNING],
        error=node_error,
        current_node=run.node_id,
    )
    return execution
