"""Execution selectors: the current status read for polling."""

from __future__ import annotations

import pytest

from executions.models import Execution, ExecutionStatus
from executions.selectors import execution_current_status
from executions.services import execution_start
from flows.services import flow_create

pytestmark = pytest.mark.usefixtures("sent")

FLOW = """
metadata: {name: one}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


def test_execution_current_status_reads_the_stored_status_not_the_instance(member):
    # given a started execution whose stored status changes behind the instance's back
    account, user = member
    flow = flow_create(account=account, user=user, content=FLOW)
    execution, _ = execution_start(account=account, flow=flow)
    Execution.objects.filter(id=execution.id).update(status=ExecutionStatus.CANCELED)
    # when its current status is read
    status = execution_current_status(execution=execution)
    # then the stored one comes back
    assert status == ExecutionStatus.CANCELED
    assert execution.status != ExecutionStatus.CANCELED
