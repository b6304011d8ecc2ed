"""Sandbox fixtures: one ScriptSandbox per test module, the per-call globals a node gets, and `run`."""

from __future__ import annotations

import pytest

from workers.sandbox import ScriptOutcome, ScriptSandbox

GLOBALS = {
    "input": {"x": 1, "items": [1, 2, 3]},
    "shared": {"x": 1, "items": [1, 2, 3]},
    "results": {"fetch": {"status": 200}},
    "secrets": {"API_KEY": "sk-live-123456"},
    "execution": {"id": "e-1", "flow_id": "f-1", "account_id": "a-1"},
}


@pytest.fixture(scope="module")
def sandbox():
    box = ScriptSandbox()
    yield box
    box.close()


def run(sandbox: ScriptSandbox, source: str, **kwargs) -> ScriptOutcome:
    """Run `source` as node `node`, with GLOBALS unless `globals` is given."""
    kwargs.setdefault("globals", GLOBALS)
    return sandbox.run(source, name="node", **kwargs)
