"""The consumer reads back frames the channel layer lost: a dropped *last* frame still reaches a subscriber."""

from __future__ import annotations

from typing import Any

import pytest

from executions import events, ws_catch_up
from tests.executions.steps import log, move, start
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
    for name in ("events_between", "last_seqs"):
        real = getattr(ws_catch_up, name)

        async def counting(real: Any = real, **kwargs: Any) -> Any:
            calls.append(str(kwargs.get("execution_id", kwargs.get("keys"))))
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


@asynchronous
async def test_catch_up_reads_a_long_gap_back_a_page_at_a_time(member, monkeypatch):
    # given a subscriber, pages of 4 stored frames, and a channel layer that loses every broadcast
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_AFTER", 0.3)
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_EVERY", 0.1)
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_PAGE", 4)
    lost: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "broadcast_frames", lambda frames, *, account_id: lost.extend(frames))
    reads: list[tuple[int, int | None]] = []
    real = ws_catch_up.events_between

    async def recording(**kwargs: Any) -> Any:
        reads.append((kwargs["after"], kwargs.get("limit")))
        return await real(**kwargs)

    monkeypatch.setattr(ws_catch_up, "events_between", recording)
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        snapshot = await receive(ws)
        lost.clear()
        # when ten log lines and the end are stored while their frames are lost on the way
        await move(execution.id, "running")
        for line in range(10):
            await log(execution.id, f"line {line}")
        await move(execution.id, "completed")
        # then the subscriber gets all twelve stored frames once, in order, then `complete`
        frames = [await ws.receive_json_from(timeout=5) for _ in range(13)]
        assert await ws.receive_nothing(timeout=0.3)
    assert [frame["seq"] for frame in frames[:12]] == [frame["seq"] for frame in lost]
    assert frames[12]["type"] == "complete"
    assert [frame["log"]["message"] for frame in frames if frame["type"] == "log"] == [
        f"line {line}" for line in range(10)
    ]
    # and they were read back four at a time, each page after the last frame of the one before
    assert [limit for _, limit in reads] == [4, 4, 4, 4]
    assert [after for after, _ in reads] == [snapshot["seq"] + offset for offset in (0, 4, 8, 12)]
