"""The consumer reads back frames the channel layer lost: a dropped *last* frame still reaches a subscriber."""

from __future__ import annotations

from typing import Any

import pytest

from executions import events, ws_catch_up
from tests.executions.steps import move, start
from tests.executions.websocket import asynchronous, connected, receive, subscribe

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("in_memory_layer", "no_broker"),
]


@asynchronous
async def test_catch_up_delivers_a_terminal_frame_the_layer_dropped(member, monkeypatch):
    # given a subscriber, a short catch-up delay, and a channel layer that loses every broadcast
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_AFTER", 0.3)
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_EVERY", 0.1)
    lost: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "broadcast_frames", lambda frames, *, account_id: lost.extend(frames))
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        snapshot = await receive(ws)
        lost.clear()
        # when the execution runs and completes while its frames are lost on the way
        await move(execution.id, "running")
        await move(execution.id, "completed")
        assert [frame["seq"] for frame in lost] == [snapshot["seq"] + 1, snapshot["seq"] + 2]
        # then the subscriber still gets both stored frames, in order, and `complete` after the terminal one
        frames = [await ws.receive_json_from(timeout=3) for _ in range(3)]
    assert [(f["type"], f["seq"]) for f in frames] == [
        ("status", lost[0]["seq"]),
        ("status", lost[1]["seq"]),
        ("complete", lost[1]["seq"]),
    ]
    assert frames[1]["status"]["status"] == "completed"


@asynchronous
async def test_catch_up_does_not_poll_a_completed_execution(member, monkeypatch):
    # given a subscriber of an execution that has already ended
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_AFTER", 0.1)
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_EVERY", 0.05)
    execution = await start(*member)
    await move(execution.id, "running")
    await move(execution.id, "completed")
    calls: list[str] = []
    for name in ("events_between", "last_seq_batched"):
        real = getattr(ws_catch_up, name)

        async def counting(real: Any = real, **kwargs: Any) -> Any:
            calls.append(kwargs["execution_id"])
            return await real(**kwargs)

        monkeypatch.setattr(ws_catch_up, name, counting)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        assert (await receive(ws))["type"] == "status"
        assert (await receive(ws))["type"] == "complete"
        # when the socket stays open well past the catch-up delay
        assert await ws.receive_nothing(timeout=0.5)
    # then the store was never read again for it
    assert calls == []
