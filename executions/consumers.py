"""The live WebSocket (/api/v1/ws): subscriptions to executions, replay, snapshots, live frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from core import metrics
from executions.events import account_group, execution_group
from executions.ws_frames import (
    MAX_SINCE,
    complete_frame,
    encode,
    is_terminal_status,
)
from executions.ws_inbox import Inbox, transport_of
from executions.ws_outbox import ABORT_AFTER_CLOSE_SECONDS, STALL_CLOSE_SECONDS, STALLED_CLOSE_CODE, Outbox
from executions.ws_requests import CLIENT_TYPES, ClientFrames  # noqa: F401  (re-exported)
from executions.ws_selectors import events_between_shared as events_between

logger = logging.getLogger(__name__)

# Protocol decisions beyond the design:
# - Every server frame that is not a stored event (`error`, `pong`) still has the one shape
#   `{type, execution_id, seq, timestamp, message?}`, with `execution_id`/`seq` null when there is none.
# - A `subscribe` to an execution already subscribed on this connection is a no-op (no replay, no snapshot):
#   its frames are already flowing, and a fresh snapshot could jump over frames still in flight. To replay
#   again, `unsubscribe` then `subscribe` with `since`.
# - `unsubscribe` of an execution not subscribed, and a second `subscribe_account`, are no-ops.
# - Dedupe is one map execution id → last seq sent, shared by `subscribe` and `subscribe_account`, so an
#   execution reached through both is sent once. `complete` is synthesized right after a terminal `status`
#   frame, with that frame's seq, once per execution (a new `subscribe` of an ended execution sends it again).

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


# The accepted connections of this process, for the metrics scrape (flowrunner.metrics counts them then).
_LIVE: weakref.WeakSet = weakref.WeakSet()


def live_consumers() -> Iterable[Any]:
    return list(_LIVE)


class ExecutionConsumer(ClientFrames, AsyncWebsocketConsumer):
    """One connection. The handshake guard (executions.ws_auth) has put `account_id` in the scope.

    With the hub layer (core.hub) the consumer subscribes to its groups as a local hub subscriber: a
    live message lands in its bounded outbox and a pump task writes it, so a frame is decoded and encoded
    once per process, not per socket. Other layers (embedded mode) deliver through the consumer's channel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account_id = ""
        self.subscriptions: set[str] = set()
        self.account_subscribed = False
        self.last_seq: OrderedDict[str, int] = OrderedDict()
        self.completed: set[str] = set()
        self.inbox: Inbox | None = None
        self._closing = False
        self.last_frame_at: dict[str, float] = {}
        self.quiet_rounds: dict[str, int] = {}
        # execution id → the last seq the client has of it, for executions whose frames were not written
        # (socket stalled, outbox full): read back from PostgreSQL once the socket takes frames again.
        self.behind: dict[str, int] = {}
        self._delivery = asyncio.Lock()
        self._catch_up_task: asyncio.Task | None = None
        self._catch_up_due = asyncio.Event()
        self._wakeup = asyncio.Event()
        self.outbox = Outbox(self._wakeup.set)
        self._pump_task: asyncio.Task | None = None
        self._transport: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        self.inbox = Inbox(receive, send)
        self._transport = transport_of(send)
        self.outbox.label = str(scope.get("client"))
        return await super().__call__(scope, receive, send)

    @property
    def _hub(self) -> bool:
        return getattr(type(self.channel_layer), "hub_add", None) is not None

    async def _join(self, group: str) -> None:
        if self._hub:
            await self.channel_layer.hub_add(group, self._on_hub_message)
        else:
            await self.channel_layer.group_add(group, self.channel_name)

    async def _leave(self, group: str) -> None:
        if self._hub:
            await self.channel_layer.hub_discard(group, self._on_hub_message)
        else:
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- connection -------------------------------------------------------------------------------------

    async def connect(self) -> None:
        account_id = self.scope.get("account_id")
        if account_id is None:  # only reachable if routing bypassed the guard; refuse rather than guess
            await self.close()
            return
        self.account_id = str(account_id)
        await self.accept()
        _LIVE.add(self)
        self.outbox.attach(self._transport)
        self._catch_up_task = asyncio.create_task(self._catch_up_loop())
        self._pump_task = asyncio.create_task(self._pump())

    async def disconnect(self, code: int) -> None:
        self._closing = True
        _LIVE.discard(self)
        for attribute in ("_catch_up_task", "_pump_task"):
            task = getattr(self, attribute)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                setattr(self, attribute, None)
        groups = [execution_group(execution_id) for execution_id in self.subscriptions]
        if self.account_subscribed:
            groups.append(account_group(self.account_id))
        for group in groups:
            await self._leave(group)
        self.subscriptions.clear()
        self.account_subscribed = False
        self.outbox.detach()

    # --- live frames from the channel layer (executions.events.broadcast_frame) -------------------------
    # --- live frames (executions.broadcast) ---------------------------------------------------------------

    def _on_hub_message(self, message: dict[str, Any]) -> None:
        """Called by the hub, synchronously, with a message shared by every local subscriber."""
        if self._closing:
            return
        if not self.outbox.put(message):
            self._skip(message)
            self._wakeup.set()

    async def _pump(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.outbox.messages:
                await self.execution_events(self.outbox.messages.popleft())
            if self.behind and not self.outbox.stalled:
                await self._catch_up_behind()

    def _skip(self, message: dict[str, Any]) -> None:
        """Note where the client stands on each execution of a message that is not written."""
        for frame in message.get("frames") or ():
            execution_id, seq = frame.get("execution_id"), frame.get("seq")
            if isinstance(execution_id, str) and isinstance(seq, int):
                if self._wants(execution_id, message.get("account_id")):
                    self._fall_behind(execution_id, seq)

    def _fall_behind(self, execution_id: str, seq: int) -> None:
        if execution_id not in self.behind:
            last = self.last_seq.get(execution_id)
            self.behind[execution_id] = last if last is not None else seq - 1

    def _wants(self, execution_id: str, account_id: Any) -> bool:
        return execution_id in self.subscriptions or (
            self.account_subscribed and str(account_id) == self.account_id
        )

    async def execution_events(self, message: dict[str, Any]) -> None:
        """The frames of one committed transaction, in seq order."""
        frames = message.get("frames")
        if not isinstance(frames, list):
            return
        # Encoded once per process: the hub hands every local subscriber the same message.
        texts = message.get("_encoded")
        if not isinstance(texts, list) or len(texts) != len(frames):
            texts = message["_encoded"] = [encode(f) if isinstance(f, dict) else "" for f in frames]
        for frame, text in zip(frames, texts, strict=True):
            await self.execution_event({"frame": frame, "account_id": message.get("account_id")}, text)

    async def execution_event(self, message: dict[str, Any], text: str | None = None) -> None:
        frame = message.get("frame") or {}
        execution_id = frame.get("execution_id")
        seq = frame.get("seq")
        if not isinstance(execution_id, str) or not isinstance(seq, int):
            return
        async with self._delivery:
            # e.g. still queued from before an unsubscribe, or a subscribe that was refused
            if self._wants(execution_id, message.get("account_id")):
                await self._fill_and_deliver(frame, execution_id, seq, text)

    async def _fill_and_deliver(
        self, frame: dict[str, Any], execution_id: str, seq: int, text: str | None = None
    ) -> None:
        if self.outbox.stalled:
            self._fall_behind(execution_id, seq)
            return
        last = self.behind.pop(execution_id, None)
        if last is None:
            last = self.last_seq.get(execution_id)
        if last is not None and seq > last + 1:
            # Broadcasts from different processes may overtake each other, a frame may have been skipped or
            # lost; the store is gapless and every event below a broadcast one has committed, so the missing
            # ones are read back in order.
            try:
                missing = await events_between(
                    account_id=self.account_id, execution_id=execution_id, after=last, before=seq
                )
            except Exception:
                # Still send the live frame: its seq shows the client the gap, which `since` can replay.
                logger.exception("websocket gap fill of %s failed", execution_id)
                missing = []
            for payload in missing:
                await self._deliver(payload)
        await self._deliver(frame, text)

    async def _catch_up_behind(self) -> None:
        for execution_id in list(self.behind):
            if self.outbox.stalled:
                return
            async with self._delivery:
                after = self.behind.pop(execution_id, None)
                if after is None or not self._wants(execution_id, self.account_id):
                    continue
                try:
                    missing = await events_between(
                        account_id=self.account_id, execution_id=execution_id, after=after, before=MAX_SINCE
                    )
                except Exception:  # the catch-up loop tries again
                    self.behind.setdefault(execution_id, after)
                    logger.warning("websocket catch-up of %s failed", execution_id, exc_info=True)
                    continue
                for payload in missing:
                    await self._deliver(payload)

    def _heard(self, execution_id: str) -> None:
        self.last_frame_at[execution_id] = time.monotonic()
        self.quiet_rounds.pop(execution_id, None)

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
                    async with self._delivery:
                        if execution_id not in self.subscriptions or execution_id in self.completed:
                            continue
                        self.last_frame_at[execution_id] = time.monotonic()
                        self.quiet_rounds[execution_id] = self.quiet_rounds.get(execution_id, 0) + 1
                        missing = await events_between(
                            account_id=self.account_id,
                            execution_id=execution_id,
                            after=self.last_seq.get(execution_id, 0),
                            before=MAX_SINCE,
                        )
                        for payload in missing:
                            await self._deliver(payload)
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

    async def _deliver(self, frame: dict[str, Any], text: str | None = None) -> None:
        execution_id = frame["execution_id"]
        last = self.last_seq.get(execution_id)
        if last is not None and frame["seq"] <= last:
            return  # a duplicate (reached through two groups) or a step backwards
        if self.outbox.stalled:  # the client stopped reading: it is read back from PostgreSQL later
            self._fall_behind(execution_id, frame["seq"])
            return
        self._heard(execution_id)
        await self._send_text(text or encode(frame))
        self._remember(execution_id, frame["seq"])
        if is_terminal_status(frame) and execution_id not in self.completed:
            self.completed.add(execution_id)
            await self._send(complete_frame(frame))

    def _remember(self, execution_id: str, seq: int) -> None:
        self.last_seq[execution_id] = seq
        self.last_seq.move_to_end(execution_id)
        excess = len(self.last_seq) - DEDUPE_CAPACITY - len(self.subscriptions)
        if excess <= 0:
            return
        for old in list(self.last_seq):
            if excess <= 0:
                break
            if old not in self.subscriptions:
                del self.last_seq[old]
                self.completed.discard(old)
                excess -= 1

    async def _send(self, frame: dict[str, Any]) -> None:
        await self._send_text(encode(frame))

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)
        metrics.frame_sent()
