"""Reading back from PostgreSQL what a WebSocket did not get live: quiet executions, stalled clients."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
import weakref
from typing import Any

from executions.ws_frames import MAX_SINCE
from executions.ws_outbox import ABORT_AFTER_CLOSE_SECONDS, STALL_CLOSE_SECONDS, STALLED_CLOSE_CODE
from executions.ws_selectors import events_between_shared as events_between
from executions.ws_selectors import last_seqs

logger = logging.getLogger(__name__)

# Executions seen only through subscribe_account are forgotten oldest-first past this many, so a long-lived
# account subscription keeps bounded memory (an individually subscribed execution is never forgotten).
DEDUPE_CAPACITY = 4096

# A subscribed execution that has not ended and sent nothing for this long is read back from PostgreSQL: the
# channel layer may drop a frame (Redis restarted, a full channel), and a lost *last* frame would otherwise
# never be noticed — the gap fill only runs when a later frame arrives.
CATCH_UP_AFTER = 2.0
CATCH_UP_EVERY = 1.0
# An execution that stays quiet is read back ever less often (a long node run is the usual reason), up to
# this: thousands of sockets watching quiet executions must not poll PostgreSQL every second each.
CATCH_UP_MAX_AFTER = 30.0
# Past this many quiet rounds the period no longer grows (it has long reached CATCH_UP_MAX_AFTER), so a round
# count of a run quiet for days never overflows the doubling.
MAX_QUIET_ROUNDS = 16
# Stored frames are read back this many at a time: a client far behind (it stopped reading while a chatty
# execution logged megabytes) must not make the process hold all it missed at once, decoded.
CATCH_UP_PAGE = 256


class CatchUp:
    """The ExecutionConsumer's read-backs (a mixin: the state lives on the consumer)."""

    subscriptions: set[str]
    completed: set[str]
    behind: dict[str, int]
    last_seq: Any
    last_frame_at: dict[str, float]
    quiet_rounds: dict[str, int]
    _wakeup: asyncio.Event
    _closing: bool
    # When this socket's booking on its loop's CatchUpClock is due (None: not booked), and the weak reference
    # every booking holds (one per socket, not one per booking).
    _catch_up_at: float | None
    _catch_up_ref: weakref.ref
    _stall_close: asyncio.Future | None

    async def _catch_up_behind(self) -> None:
        for execution_id in list(self.behind):
            if self.outbox.stalled:
                return
            async with self._delivery:
                after = self.behind.pop(execution_id, None)
                if after is None or not self._wants(execution_id, self.account_id):
                    continue
                try:
                    await self._read_back(execution_id, after)
                except Exception:  # tried again at the socket's next look, within CATCH_UP_EVERY
                    self.behind.setdefault(execution_id, after)
                    logger.warning("websocket catch-up of %s failed", execution_id, exc_info=True)
                    self._catch_up_schedule()

    async def _read_back(self, execution_id: str, after: int) -> None:
        """Deliver the next page of stored frames after `after`; a full page leaves the rest to the pump's next
        turn (after what is queued live, and only while the client reads)."""
        missing = await events_between(
            account_id=self.account_id,
            execution_id=execution_id,
            after=after,
            before=MAX_SINCE,
            limit=CATCH_UP_PAGE,
        )
        for payload in missing:
            await self._deliver(payload)
        if len(missing) >= CATCH_UP_PAGE:
            self._fall_behind(execution_id, missing[-1]["seq"] + 1)
            self._wakeup.set()

    def _quiet_for(self, execution_id: str) -> float:
        rounds = min(self.quiet_rounds.get(execution_id, 0), MAX_QUIET_ROUNDS)
        return min(CATCH_UP_AFTER * 2**rounds, CATCH_UP_MAX_AFTER)

    def _catch_up_schedule(self, *, now: float | None = None) -> None:
        """Book this socket's next look (at most CATCH_UP_EVERY away while it is stalled or behind, else when
        its first subscribed execution turns quiet) on its loop's clock; an earlier booking stands."""
        if self._closing:
            return
        now = time.monotonic() if now is None else now
        delay = CATCH_UP_EVERY
        if not self.outbox.stalled and not self.behind:
            dues = [
                self.last_frame_at.get(execution_id, 0.0) + self._quiet_for(execution_id)
                for execution_id in self.subscriptions
                if execution_id not in self.completed
            ]
            delay = max(CATCH_UP_EVERY, min(dues) - now) if dues else CATCH_UP_MAX_AFTER
        when = now + delay
        if self._catch_up_at is None or when < self._catch_up_at:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside the server's loop (a test's direct call): no clock to use
                return
            CatchUpClock.of(loop).book(self, when)

    def _catch_up_due(self, now: float, quiet: list[tuple[CatchUp, str]]) -> None:
        """The clock's call when this socket's booking is due: close it if it stopped reading for good, wake
        its pump when frames wait in PostgreSQL, and add its quiet executions to the clock's one read."""
        if self._closing:
            return
        if self.outbox.stalled_for(now) > STALL_CLOSE_SECONDS or len(self.behind) > DEDUPE_CAPACITY:
            self._closing = True
            self._stall_close = asyncio.ensure_future(self._close_stalled())
            self._stall_close.add_done_callback(_log_failure)
            return
        if not self.outbox.stalled:
            if self.behind:
                self._wakeup.set()
            for execution_id in self.subscriptions:
                if execution_id in self.completed:
                    continue
                if now - self.last_frame_at.get(execution_id, 0.0) >= self._quiet_for(execution_id):
                    # Counted as looked at now, so the booking below is the next quiet period's.
                    self.last_frame_at[execution_id] = now
                    rounds = self.quiet_rounds.get(execution_id, 0)
                    self.quiet_rounds[execution_id] = min(rounds + 1, MAX_QUIET_ROUNDS)
                    quiet.append((self, execution_id))
        self._catch_up_schedule(now=now)

    def _catch_up_checked(self, execution_id: str, stored: int | None) -> None:
        """The stored last seq of a quiet execution: frames past what the client has are read back by the pump,
        in turn with live deliveries."""
        if self._closing or execution_id not in self.subscriptions or execution_id in self.completed:
            return
        last = self.last_seq.get(execution_id, 0)
        if stored is not None and stored > last:
            self._fall_behind(execution_id, stored)
            self._wakeup.set()

    def _catch_up_failed(self, execution_id: str) -> None:
        """The read failed: the execution is looked at again a round later, its quiet period not lengthened."""
        if execution_id in self.last_frame_at:
            self.last_frame_at[execution_id] = 0.0
            self.quiet_rounds[execution_id] = max(0, self.quiet_rounds.get(execution_id, 1) - 1)
            self._catch_up_schedule()

    async def _close_stalled(self) -> None:
        logger.warning("websocket client %s stopped reading; closing", self.scope.get("client"))
        self.outbox.messages.clear()
        await self.close(code=STALLED_CLOSE_CODE)
        # The close frame may never get through a buffer the client does not read.
        asyncio.get_running_loop().call_later(ABORT_AFTER_CLOSE_SECONDS, self.outbox.abort)


class CatchUpClock:
    """The read-back bookings of every socket of one event loop, on one timer.

    A task per socket sleeping between looks would, with ten thousand idle sockets, make a few hundred
    timers, tasks and futures a second, each living seconds: enough for the garbage collector's young passes
    to stop the loop for tens of milliseconds, and every survivor brings its next full pass (seconds, with
    that many sockets) closer. A booking here is one tuple; due bookings are handled together, and their
    quiet executions read in one query (`last_seqs`) a pass, at most one pass every WINDOW seconds."""

    WINDOW = 0.05
    _clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CatchUpClock] = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Nothing here refers to the loop (a pending timer handle would): the clock goes with its loop.
        self._loop = weakref.ref(loop)
        self.bookings: list[tuple[float, int, weakref.ref]] = []
        self._order = itertools.count()
        # The time the live timer fires at; a timer armed for another time has been superseded and does nothing.
        self._timer_at = math.inf
        self._last_pass = -math.inf
        self._reads: set[asyncio.Task] = set()

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> CatchUpClock:
        clock = cls._clocks.get(loop)
        if clock is None:
            clock = cls._clocks[loop] = cls(loop)
        return clock

    def book(self, consumer: CatchUp, when: float) -> None:
        """Replace the consumer's booking by one at `when` (time.monotonic()); the old one is skipped when due."""
        consumer._catch_up_at = when
        heapq.heappush(self.bookings, (when, next(self._order), consumer._catch_up_ref))
        self._arm()

    def _arm(self) -> None:
        if not self.bookings:
            return
        at = max(self.bookings[0][0], self._last_pass + self.WINDOW)
        if self._timer_at <= at:
            return
        loop = self._loop()
        if loop is not None:
            self._timer_at = at
            loop.call_later(max(0.0, at - time.monotonic()), self._pass, at)

    def _pass(self, at: float) -> None:
        if at != self._timer_at:
            return  # superseded by an earlier timer, which ran this pass
        self._timer_at = math.inf
        now = self._last_pass = time.monotonic()
        quiet: list[tuple[CatchUp, str]] = []
        try:
            while self.bookings and self.bookings[0][0] <= now:
                when, _, ref = heapq.heappop(self.bookings)
                consumer = ref()
                if consumer is None or consumer._catch_up_at != when:
                    continue  # gone, or booked again since
                consumer._catch_up_at = None
                try:
                    consumer._catch_up_due(now, quiet)
                except Exception:  # one socket's failure must not end its own or the others' looks
                    logger.exception("websocket catch-up of %s failed", consumer.scope.get("client"))
                    if not consumer._closing and consumer._catch_up_at is None:
                        self.book(consumer, now + CATCH_UP_EVERY)
            loop = self._loop()
            if quiet and loop is not None:
                read = loop.create_task(self._read(quiet))
                self._reads.add(read)
                read.add_done_callback(self._reads.discard)
        finally:
            self._arm()

    async def _read(self, quiet: list[tuple[CatchUp, str]]) -> None:
        keys = list({(consumer.account_id, execution_id) for consumer, execution_id in quiet})
        try:
            stored = await last_seqs(keys=keys)
        except Exception:
            logger.warning("websocket catch-up read of %d executions failed", len(keys), exc_info=True)
            stored = None
        for consumer, execution_id in quiet:
            try:
                if stored is None:
                    consumer._catch_up_failed(execution_id)
                else:
                    consumer._catch_up_checked(execution_id, stored.get((consumer.account_id, execution_id)))
            except Exception:  # one socket's failure must not cost the others their answer
                logger.exception("websocket catch-up of %s failed", execution_id)


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("websocket close of a stalled client failed", exc_info=task.exception())
