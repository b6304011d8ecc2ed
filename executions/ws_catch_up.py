"""Reading back from PostgreSQL what a WebSocket did not get live: quiet executions, stalled clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from executions.ws_frames import MAX_SINCE
from executions.ws_outbox import ABORT_AFTER_CLOSE_SECONDS, STALL_CLOSE_SECONDS, STALLED_CLOSE_CODE
from executions.ws_selectors import events_between_shared as events_between
from executions.ws_selectors import last_seq_batched

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
                except Exception:  # the catch-up loop tries again
                    self.behind.setdefault(execution_id, after)
                    logger.warning("websocket catch-up of %s failed", execution_id, exc_info=True)

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
        return min(CATCH_UP_AFTER * 2 ** self.quiet_rounds.get(execution_id, 0), CATCH_UP_MAX_AFTER)

    async def _catch_up_sleep(self) -> None:
        """Until the next read-back is due (a new subscription wakes it early): an idle socket costs no
        wake-up a second, which thousands of them per process would add up to."""
        delay = CATCH_UP_EVERY
        if not self.outbox.stalled and not self.behind:
            dues = [
                self.last_frame_at.get(execution_id, 0.0) + self._quiet_for(execution_id)
                for execution_id in self.subscriptions
                if execution_id not in self.completed
            ]
            delay = max(CATCH_UP_EVERY, min(dues) - time.monotonic()) if dues else CATCH_UP_MAX_AFTER
        self._catch_up_due.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._catch_up_due.wait(), delay)

    async def _catch_up_loop(self) -> None:
        while True:
            await self._catch_up_sleep()
            now = time.monotonic()
            if self.outbox.stalled_for(now) > STALL_CLOSE_SECONDS or len(self.behind) > DEDUPE_CAPACITY:
                await self._close_stalled()
                return
            if self.outbox.stalled:
                continue
            if self.behind:
                self._wakeup.set()
            quiet = [
                execution_id
                for execution_id in self.subscriptions
                if execution_id not in self.completed
                and now - self.last_frame_at.get(execution_id, 0.0) >= self._quiet_for(execution_id)
            ]
            for execution_id in quiet:
                try:
                    stored = await last_seq_batched(account_id=self.account_id, execution_id=execution_id)
                    async with self._delivery:
                        if execution_id not in self.subscriptions or execution_id in self.completed:
                            continue
                        self.last_frame_at[execution_id] = time.monotonic()
                        self.quiet_rounds[execution_id] = self.quiet_rounds.get(execution_id, 0) + 1
                        if stored is None or stored <= self.last_seq.get(execution_id, 0):
                            continue  # nothing was missed: no events to read
                        await self._read_back(execution_id, self.last_seq.get(execution_id, 0))
                except asyncio.CancelledError:
                    raise
                except Exception:  # the next round tries again
                    logger.warning("websocket catch-up of %s failed", execution_id, exc_info=True)

    async def _close_stalled(self) -> None:
        logger.warning("websocket client %s stopped reading; closing", self.scope.get("client"))
        self._closing = True
        self.outbox.messages.clear()
        await self.close(code=STALLED_CLOSE_CODE)
        # The close frame may never get through a buffer the client does not read.
        asyncio.get_running_loop().call_later(ABORT_AFTER_CLOSE_SECONDS, self.outbox.abort)
