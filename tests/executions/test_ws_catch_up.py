"""One clock per event loop books every socket's read-backs: quiet executions read together, stalls closed."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any

import pytest

from executions import ws_catch_up
from executions.consumers import ExecutionConsumer
from executions.ws_catch_up import CatchUpClock
from executions.ws_outbox import STALLED_CLOSE_CODE

QUIET = "00000000-0000-0000-0000-0000000000a1"
OTHER = "00000000-0000-0000-0000-0000000000a2"


@pytest.fixture
def quick(monkeypatch):
    """Catch-up periods of milliseconds, and the stored last seqs the clock's reads return (recorded)."""
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_AFTER", 0.04)
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_EVERY", 0.02)
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_MAX_AFTER", 0.3)
    monkeypatch.setattr(CatchUpClock, "WINDOW", 0.01)
    state: dict[str, Any] = {"stored": {}, "reads": [], "fail": 0}

    async def last_seqs(*, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        state["reads"].append(sorted(keys))
        if state["fail"]:
            state["fail"] -= 1
            raise ConnectionError("database went away")
        return {key: state["stored"][key] for key in keys if key in state["stored"]}

    monkeypatch.setattr(ws_catch_up, "last_seqs", last_seqs)
    return state


def subscriber(execution_id: str, *, last_seq: int = 5, now: float | None = None) -> ExecutionConsumer:
    """A subscribed socket that last heard of its execution `now` (time.monotonic()) and is booked from then."""
    consumer = ExecutionConsumer()
    consumer.scope = {"client": ["127.0.0.1", 1]}
    consumer.account_id = "1"
    consumer.subscriptions.add(execution_id)
    consumer._remember(execution_id, last_seq)
    now = time.monotonic() if now is None else now
    consumer.last_frame_at[execution_id] = now
    consumer._catch_up_schedule(now=now)
    return consumer


def test_ws_catch_up_quiet_sockets_due_together_share_one_read(quick):
    # given forty sockets on two quiet executions, one of which stored a frame past what its sockets have
    quick["stored"] = {("1", QUIET): 5, ("1", OTHER): 7}

    async def scenario() -> list[ExecutionConsumer]:
        now = time.monotonic()
        consumers = [subscriber(QUIET if i % 2 else OTHER, now=now) for i in range(40)]
        # when their first quiet period passes
        await asyncio.sleep(0.07)
        return consumers

    consumers = asyncio.run(scenario())
    # then one read answered all of them, once per execution
    assert quick["reads"] == [sorted([("1", QUIET), ("1", OTHER)])]
    # and only the sockets of the execution that moved wait for a read-back from where they stand
    behind = [consumer.behind for consumer in consumers]
    assert behind[0::2] == [{OTHER: 5}] * 20
    assert behind[1::2] == [{}] * 20


def test_ws_catch_up_a_quiet_execution_is_looked_at_ever_less_often(quick):
    # given one socket on an execution that stays quiet
    async def scenario() -> list[float]:
        consumer = subscriber(QUIET)
        started, seen = asyncio.get_running_loop().time(), []
        for _ in range(40):
            await asyncio.sleep(0.01)
            if len(quick["reads"]) > len(seen):
                seen.append(asyncio.get_running_loop().time() - started)
        assert consumer.quiet_rounds[QUIET] == len(seen)
        return seen

    # when it is watched for 0.4 s
    seen = asyncio.run(scenario())
    # then it was read after 0.04 s, then 0.08 s after that, then 0.16 s: each quiet period twice the last
    assert len(seen) == 3
    gaps = [seen[0], seen[1] - seen[0], seen[2] - seen[1]]
    assert gaps[0] < gaps[1] < gaps[2]


def test_ws_catch_up_a_failed_read_is_tried_again_without_a_longer_wait(quick, monkeypatch):
    # given a quiet socket (read after 0.1 s, then 0.2 s later) and a database that fails the first read
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_AFTER", 0.1)
    quick["fail"] = 1
    quick["stored"] = {("1", QUIET): 9}

    async def scenario() -> ExecutionConsumer:
        consumer = subscriber(QUIET)
        # when 0.22 s pass: the first read, its retry ~0.02 s later, and not yet the next quiet period's
        await asyncio.sleep(0.22)
        return consumer

    consumer = asyncio.run(scenario())
    # then the read came again a round later (not a doubled quiet period later) and found the frames missed
    assert len(quick["reads"]) == 2
    assert consumer.behind == {QUIET: 5}
    assert consumer.quiet_rounds[QUIET] == 1


@pytest.mark.parametrize("how", ["ended", "disconnected", "collected"])
def test_ws_catch_up_ended_executions_and_gone_sockets_are_not_read(quick, how):
    # given a socket whose execution ended, or that disconnected (still referenced), or that is gone
    async def scenario() -> None:
        consumer = subscriber(QUIET)
        if how == "ended":
            consumer.completed.add(QUIET)
        elif how == "disconnected":
            consumer._closing, consumer._catch_up_at = True, None  # what disconnect() does first
        else:
            del consumer
            gc.collect()
        # when its quiet period passes twice over
        await asyncio.sleep(0.12)

    asyncio.run(scenario())
    # then the store was never read for it
    assert quick["reads"] == []


def test_ws_catch_up_a_socket_whose_look_failed_is_looked_at_again_and_the_rest_are_served(
    quick, monkeypatch
):
    # given two quiet sockets, the first of which fails its first look
    quick["stored"] = {("1", QUIET): 9}

    async def scenario() -> list[ExecutionConsumer]:
        now = time.monotonic()
        broken, healthy = subscriber(OTHER, now=now), subscriber(QUIET, now=now)
        real, failures = broken._catch_up_due, []

        def failing_once(at: float, quiet: list) -> None:
            if not failures:
                failures.append(at)
                raise RuntimeError("a bug in one socket's look")
            real(at, quiet)

        broken._catch_up_due = failing_once
        # when their quiet periods pass
        await asyncio.sleep(0.1)
        return [broken, healthy]

    broken, healthy = asyncio.run(scenario())
    # then the healthy one was read and caught up, and the broken one was looked at again a round later
    assert healthy.behind == {QUIET: 5}
    assert quick["reads"][0] == [("1", QUIET)]
    assert ("1", OTHER) in quick["reads"][1]
    assert broken.quiet_rounds[OTHER] == 1


def test_ws_catch_up_a_run_quiet_for_days_keeps_the_longest_period(quick):
    # given a socket whose execution has been quiet for thousands of rounds
    consumer = subscriber(QUIET)
    consumer.quiet_rounds[QUIET] = 5000
    # when its next quiet period is computed, then it is the longest one, not an overflow
    assert consumer._quiet_for(QUIET) == ws_catch_up.CATCH_UP_MAX_AFTER


def test_ws_catch_up_a_socket_that_stopped_reading_is_closed_after_the_limit(quick, monkeypatch):
    # given a socket whose client stopped reading, and a stall limit of 0.1 s
    monkeypatch.setattr(ws_catch_up, "STALL_CLOSE_SECONDS", 0.1)
    closed: list[int] = []

    async def scenario() -> ExecutionConsumer:
        consumer = subscriber(QUIET)

        async def close(code: int | None = None) -> None:
            closed.append(code)

        consumer.close = close
        consumer.outbox.pauseProducing()
        # when it stays stalled past the limit
        await asyncio.sleep(0.2)
        return consumer

    consumer = asyncio.run(scenario())
    # then it was closed once, with the stalled code, and nothing was read for it meanwhile
    assert closed == [STALLED_CLOSE_CODE]
    assert consumer._closing
    assert quick["reads"] == []


def test_ws_catch_up_a_new_subscription_books_an_earlier_look(quick, monkeypatch):
    # given a socket with no subscription (booked a long way off)
    monkeypatch.setattr(ws_catch_up, "CATCH_UP_MAX_AFTER", 30.0)

    async def scenario() -> None:
        consumer = ExecutionConsumer()
        consumer.scope = {"client": None}
        consumer.account_id = "1"
        consumer._catch_up_schedule()
        # when it subscribes to an execution that then stays quiet
        consumer.subscriptions.add(QUIET)
        consumer._remember(QUIET, 5)
        consumer._heard(QUIET)
        consumer._catch_up_schedule()
        await asyncio.sleep(0.08)

    asyncio.run(scenario())
    # then the execution was looked at after its quiet period, not after the long booking
    assert quick["reads"] == [[("1", QUIET)]]


def test_ws_catch_up_a_clock_does_not_keep_its_loop_alive(quick):
    # given a loop whose clock still holds a booking (and a timer) when the loop ends
    loops: list[weakref.ref] = []

    async def scenario() -> ExecutionConsumer:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return subscriber(QUIET)

    consumer = asyncio.run(scenario())
    # when the loop is let go
    gc.collect()
    # then it is collected, clock and all, though a socket of it is still referenced
    assert loops[0]() is None
    assert consumer._catch_up_at is not None
