"""Engine test steps: executions started through the services, as the API starts them."""

from __future__ import annotations

from executions.services import execution_start
from flows.services import flow_create


def start_execution(member, content: str, input: dict | None = None):
    """A flow of `content` created for `member`'s account and started with `input`."""
    account, user = member
    flow = flow_create(account=account, user=user, content=content)
    execution, _ = execution_start(account=account, flow=flow, user=user, input=input or {})
    return execution
