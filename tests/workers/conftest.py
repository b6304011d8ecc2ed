"""Engine fixtures: the tasks the engine publishes, captured instead of sent to a broker."""

from __future__ import annotations

import pytest

from executions import dispatch


@pytest.fixture
def sent(monkeypatch):
    """Tasks the engine publishes (after commit), captured instead of sent to a broker."""
    calls: list[tuple[str, int, dict]] = []
    monkeypatch.setattr(
        dispatch, "send_now", lambda task, node_run_id, **options: calls.append((task, node_run_id, options))
    )
    return calls
