"""The /api/v1/ws consumer against the real ASGI app: snapshots, replay, live frames, dedupe, gaps, errors."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.conf import settings as django_settings

from executions import events
from executions.events import account_group, execution_group
from tests.executions.steps import log, move, snapshot_of, start, stored_frames
from tests.executions.websocket import (
    asynchronous,
    broadcast,
    connected,
    kinds,
    ping_pong,
    receive,
    receive_all,
    subscribe,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("in_memory_layer", "no_broker"),
]

CONFIGURED_LAYERS = copy.deepcopy(django_settings.CHANNEL_LAYERS)


# --- subscribe: snapshot, replay, complete ----------------------------------------------------------------


@asynchronous
async def test_subscribe_sends_snapshot_of_current_status(member):
    # given a queued execution of the caller's account
    execution = await start(*member)
    async with connected(member[1]) as ws:
        # when the caller subscribes without `since`
        await subscribe(ws, execution.id)
        frames = await receive_all(ws)
    # then exactly one frame comes: the snapshot at the execution's last seq (no replay, no complete)
    last_seq, status = await snapshot_of(execution.id)
    assert len(frames) == 1
    assert frames[0] == {
        "type": "status",
        "execution_id": str(execution.id),
        "seq": last_seq,
        "timestamp": frames[0]["timestamp"],
        "status": status,
    }


@asynchronous
async def test_subscribe_with_since_replays_stored_events_then_snapshot(member):
    # given an execution that has started and logged
    execution = await start(*member)
    await move(execution.id, "running")
    await log(execution.id, "hello")
    stored = await stored_frames(execution.id)
    async with connected(member[1]) as ws:
        # when the caller subscribes with since=1
        await subscribe(ws, execution.id, since=1)
        frames = await receive_all(ws)
    # then the stored events with seq > 1 come verbatim, in order, then the snapshot at the last seq
    assert frames[:-1] == stored[1:]
    assert kinds(frames[-1:]) == [("status", stored[-1]["seq"])]
    assert frames[-1]["status"]["status"] == "running"


@asynchronous
async def test_subscribe_replay_shows_history_not_todays_row(member):
    # given an execution that went from queued to running
    execution = await start(*member)
    await move(execution.id, "running")
    async with connected(member[1]) as ws:
        # when the caller replays from the start
        await subscribe(ws, execution.id, since=0)
        frames = await receive_all(ws)
    # then the first status event still says queued (the history) and the snapshot says running
    statuses = [frame["status"]["status"] for frame in frames if frame["type"] == "status"]
    assert (frames[0]["seq"], statuses[0], statuses[-1]) == (1, "queued", "running")


@asynchronous
async def test_subscribe_after_the_end_gets_snapshot_and_complete(member):
    # given an execution that has already completed
    execution = await start(*member)
    await move(execution.id, "running")
    await move(execution.id, "completed")
    async with connected(member[1]) as ws:
        # when a late subscriber arrives, replaying everything
        await subscribe(ws, execution.id, since=0)
        frames = await receive_all(ws)
    # then it gets the history, the terminal snapshot and exactly one `complete` with the snapshot's seq
    last_seq, _ = await snapshot_of(execution.id)
    assert kinds(frames[-2:]) == [("status", last_seq), ("complete", last_seq)]
    assert [frame["type"] for frame in frames].count("complete") == 1
    assert frames[-1]["message"] == "Execution completed with status: completed"
    assert frames[-1]["execution_id"] == str(execution.id)


@asynchronous
async def test_live_frames_follow_and_complete_follows_terminal_status(member):
    # given a subscriber to a queued execution
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        start_seq = (await receive(ws))["seq"]
        # when the execution starts, logs and fails
        await move(execution.id, "running")
        await log(execution.id, "working")
        await move(execution.id, "failed")
        frames = await receive_all(ws)
    # then each change arrives once, verbatim, in seq order, and `complete` follows the terminal status
    expected = [("status", 1), ("log", 2), ("status", 3), ("complete", 3)]
    assert kinds(frames) == [(kind, start_seq + offset) for kind, offset in expected]
    assert frames[:3] == (await stored_frames(execution.id))[start_seq:]
    assert frames[3]["message"] == "Execution completed with status: failed"


# --- isolation ----------------------------------------------------------------------------------------------


@asynchronous
async def test_subscribe_other_accounts_execution_answers_error_only(member, other_member):
    # given an execution of another account
    foreign = await start(*other_member)
    async with connected(member[1]) as ws:
        # when the caller subscribes to it (with since) and the execution then changes
        await subscribe(ws, foreign.id, since=0)
        error = await receive(ws)
        await move(foreign.id, "running")
        # then one `error` frame comes, shaped like every frame, and nothing of the execution ever follows
        assert await ws.receive_nothing(timeout=0.3)
    assert error == {
        "type": "error",
        "execution_id": str(foreign.id),
        "seq": None,
        "timestamp": error["timestamp"],
        "message": "execution not found",
    }


@asynchronous
async def test_subscribe_unknown_execution_answers_error(member):
    # given an execution id that does not exist
    unknown = uuid.uuid4()
    async with connected(member[1]) as ws:
        # when the caller subscribes to it
        await subscribe(ws, unknown)
        frames = await receive_all(ws)
        # then a single not-found error comes and the connection stays usable
        assert [(frame["type"], frame["execution_id"], frame["message"]) for frame in frames] == [
            ("error", str(unknown), "execution not found")
        ]
        await ping_pong(ws)


@asynchronous
async def test_subscribe_account_sees_own_executions_only(member, other_member):
    # given a caller subscribed to their account, and executions of both accounts
    own = await start(*member)
    foreign = await start(*other_member)
    async with connected(member[1]) as ws:
        await ws.send_json_to({"type": "subscribe_account"})
        # when both executions change and a new one of the caller's account starts
        await move(foreign.id, "running")
        await move(own.id, "running")
        fresh = await start(*member)
        frames = await receive_all(ws)
    # then only the caller's executions show up
    assert {frame["execution_id"] for frame in frames} == {str(own.id), str(fresh.id)}


# --- dedupe and gaps ----------------------------------------------------------------------------------------


@asynchronous
async def test_subscribe_twice_never_duplicates_frames(member):
    # given a subscriber to an execution
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        await receive(ws)
        # when it subscribes again (even with since) and the execution changes
        await subscribe(ws, execution.id, since=0)
        assert await ws.receive_nothing(timeout=0.3)
        await move(execution.id, "running")
        frames = await receive_all(ws)
    # then the second subscribe was a no-op and the change arrives once
    assert [frame["type"] for frame in frames] == ["status"]


@asynchronous
async def test_live_frame_with_old_seq_is_dropped(member):
    # given a subscriber that has received the snapshot
    account, _ = member
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        snapshot = await receive(ws)
        old = (await stored_frames(execution.id))[0]
        # when late broadcasts of an older event and of the snapshot's seq arrive
        await broadcast(account.id, old)
        await broadcast(account.id, {**old, "seq": snapshot["seq"]})
        # then nothing is sent: no duplicate, no step backwards
        assert await ws.receive_nothing(timeout=0.3)


@asynchronous
async def test_gap_in_live_frames_is_filled_from_the_store(member, monkeypatch):
    # given a subscriber, and three events stored whose broadcasts are held back
    account, _ = member
    execution = await start(*member)
    held: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "broadcast_frames", lambda frames, *, account_id: held.extend(frames))
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        snapshot = await receive(ws)
        await move(execution.id, "running")
        await log(execution.id, "one")
        await log(execution.id, "two")
        assert [frame["seq"] for frame in held] == [snapshot["seq"] + n for n in (1, 2, 3)]
        # when the last broadcast overtakes the others, which then arrive late
        for frame in (held[2], held[0], held[1]):
            await broadcast(account.id, frame)
        frames = await receive_all(ws)
    # then the missing events are read from the store and sent first, in order, each exactly once
    assert frames == held


@asynchronous
async def test_account_and_execution_subscriptions_share_dedupe(member):
    # given a caller subscribed both to an execution and to the whole account
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        await receive(ws)
        await ws.send_json_to({"type": "subscribe_account"})
        # when the execution changes and completes (each frame reaches both groups)
        await move(execution.id, "running")
        await move(execution.id, "completed")
        frames = await receive_all(ws)
    # then every frame, and `complete`, arrives once
    assert [frame["type"] for frame in frames] == ["status", "status", "complete"]
    assert frames[0]["seq"] < frames[1]["seq"] == frames[2]["seq"]


# --- unsubscribe and disconnect -----------------------------------------------------------------------------


@asynchronous
async def test_unsubscribe_stops_frames_and_resubscribe_sends_new_snapshot(member):
    # given a subscriber to an execution
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        await receive(ws)
        # when it unsubscribes and the execution changes
        await ws.send_json_to({"type": "unsubscribe", "execution_id": str(execution.id)})
        await move(execution.id, "running")
        # then nothing more comes, and a new subscribe starts over with a fresh snapshot
        assert await ws.receive_nothing(timeout=0.3)
        await subscribe(ws, execution.id)
        frames = await receive_all(ws)
    assert [(frame["type"], frame["status"]["status"]) for frame in frames] == [("status", "running")]


@asynchronous
async def test_disconnect_leaves_every_group(member):
    # given a connection subscribed to an execution and to its account
    account, _ = member
    execution = await start(*member)
    layer = get_channel_layer()
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        await ws.send_json_to({"type": "subscribe_account"})
        await receive(ws)
        await ping_pong(ws)  # the account subscription has been processed by now
        assert layer.groups.get(execution_group(execution.id))
        assert layer.groups.get(account_group(account.id))
        # when the client disconnects (leaving the block)
    # then no group keeps its channel
    assert not layer.groups.get(execution_group(execution.id))
    assert not layer.groups.get(account_group(account.id))


# --- frame validation and limits ----------------------------------------------------------------------


@asynchronous
async def test_subscriptions_beyond_the_limit_answer_error(member, settings):
    # given a limit of one subscription per connection, already used
    settings.FLOWRUNNER_WS_MAX_SUBSCRIPTIONS = 1
    execution = await start(*member)
    second = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        await receive(ws)
        # when it subscribes to another execution and to the account
        await subscribe(ws, second.id)
        refused = await receive(ws)
        await ws.send_json_to({"type": "subscribe_account"})
        refused_account = await receive(ws)
        await move(second.id, "running")
        await move(execution.id, "running")
        frames = await receive_all(ws)
    # then both are refused with an error and the first subscription keeps working
    assert (refused["type"], refused["execution_id"]) == ("error", str(second.id))
    assert "too many subscriptions" in refused["message"]
    assert (refused_account["type"], refused_account["execution_id"]) == ("error", None)
    assert {frame["execution_id"] for frame in frames} == {str(execution.id)}


# --- the production channel layer ---------------------------------------------------------------------------


@pytest.mark.skipif(
    "redis" not in CONFIGURED_LAYERS["default"]["BACKEND"].lower(), reason="FLOWRUNNER_REDIS_URL not set"
)
@asynchronous
async def test_live_frames_cross_the_redis_channel_layer(member, settings):
    # given the configured Redis channel layer and a subscriber
    settings.CHANNEL_LAYERS = CONFIGURED_LAYERS
    execution = await start(*member)
    async with connected(member[1]) as ws:
        await subscribe(ws, execution.id)
        await receive(ws)
        # when the execution completes
        await move(execution.id, "running")
        await move(execution.id, "completed")
        frames = await receive_all(ws)
    # then the frames came through Redis, in order, with `complete`
    assert [frame["type"] for frame in frames] == ["status", "status", "complete"]
