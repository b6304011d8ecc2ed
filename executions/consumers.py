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
from executions.ws_catch_up import DEDUPE_CAPACITY, CatchUp
from executions.ws_frames import (
    complete_frame,
    encode,
    is_terminal_status,
)
from executions.ws_inbox import Inbox, transport_of
from executions.ws_outbox import Outbox
from executions.ws_requests import CLIENT_TYPES, ClientFrames  # noqa: F401  (re-exported)
from executions.ws_selectors import events_between_shared as events_between
from executions.ws_wire import OPEN, WRITE_CHUNK_BYTES, Wire, protocol_of, write

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


# The accepted connections of this process, for the metrics scrape (flowrunner.metrics counts them then).
_LIVE: weakref.WeakSet = weakref.WeakSet()


def live_consumers() -> Iterable[Any]:
    return list(_LIVE)


class _SentFrames:
    """Frames written to sockets, added to the metric once per loop turn: one hub message reaches hundreds of
    sockets within a turn, and a counter update (a lock) per socket was a measurable part of each write."""

    def __init__(self) -> None:
        self.pending = 0
        self.flush_on: asyncio.AbstractEventLoop | None = None

    def add(self, count: int) -> None:
        if count <= 0:
            return
        self.pending += count
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside an event loop: nothing to gather, report now
            self._flush()
            return
        if self.flush_on is not loop:  # not yet scheduled on this loop (or on one that has stopped since)
            self.flush_on = loop
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        count, self.pending, self.flush_on = self.pending, 0, None
        if count:
            metrics.frame_sent(count)


_SENT = _SentFrames()


class ExecutionConsumer(ClientFrames, CatchUp, AsyncWebsocketConsumer):
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
        self._catch_up_at: float | None = None
        self._catch_up_ref = weakref.ref(self)
        self._stall_close: asyncio.Future | None = None
        self._wakeup = asyncio.Event()
        self.outbox = Outbox(self._wakeup.set)
        self._pump_task: asyncio.Task | None = None
        # A live message written in part when the transport filled up, and the indices of its frames still to
        # write: a reference to the message every local subscriber shares, written on once the client reads.
        self._rest: tuple[dict[str, Any], list[int]] | None = None
        self._pumping = False
        self._transport: Any = None
        self._protocol: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        self.inbox = Inbox(receive, send)
        self._transport = transport_of(send)
        self._protocol = protocol_of(send)
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
        self._pump_task = asyncio.create_task(self._pump())
        self._catch_up_schedule()

    async def disconnect(self, code: int) -> None:
        self._closing = True
        _LIVE.discard(self)
        self._catch_up_at = None
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump_task
            self._pump_task = None
        groups = [execution_group(execution_id) for execution_id in self.subscriptions]
        if self.account_subscribed:
            groups.append(account_group(self.account_id))
        for group in groups:
            await self._leave(group)
        self.subscriptions.clear()
        self.account_subscribed = False
        self._rest = None
        self.outbox.detach()

    # --- live frames (executions.broadcast) ---------------------------------------------------------------

    def _on_hub_message(self, message: dict[str, Any]) -> None:
        """Called by the hub, synchronously, with a message shared by every local subscriber."""
        if self._closing or self._write_now(message):
            return
        if not self.outbox.put(message):
            self._skip(message)
            self._wakeup.set()

    def _write_now(self, message: dict[str, Any]) -> bool:
        """The common case, handled right here without a task switch or a send() per frame: nothing else is
        being delivered to this socket, it takes frames, and each wanted frame follows the last one sent. The
        message's frames then go out as bytes framed once for every local socket, in one write. False (and
        nothing written) when the pump must handle it: a gap to read back, a socket behind or stalled."""
        protocol = self._protocol
        if (
            protocol is None
            or self._pumping
            or self._rest is not None
            or self.outbox.messages
            or self._delivery.locked()
            or self.outbox.stalled
            or self.behind
            or protocol.state != OPEN
        ):
            return False
        frames = message.get("frames")
        if not isinstance(frames, list):
            return True
        account_id = message.get("account_id")
        picked: list[int] = []
        sent: dict[str, int] = {}
        for index, frame in enumerate(frames):
            if not isinstance(frame, dict):
                continue
            execution_id, seq = frame.get("execution_id"), frame.get("seq")
            if not isinstance(execution_id, str) or not isinstance(seq, int):
                continue
            if not self._wants(execution_id, account_id):
                continue
            last = sent.get(execution_id, self.last_seq.get(execution_id))
            if last is not None and seq <= last:
                continue  # a duplicate (reached through two groups) or a step backwards
            if last is not None and seq > last + 1:
                return False
            sent[execution_id] = seq
            picked.append(index)
        if picked:
            self._write_picked(protocol, message, picked)
        return True

    def _write_picked(self, protocol: Any, message: dict[str, Any], picked: list[int]) -> None:
        """Write these frames of a message, about one transport buffer at a time. Once the transport is full
        (its client is not reading, or not yet) the rest waits in `_rest` for the pump: a socket holds one
        buffer of bytes, never a copy of a large transaction's frames."""
        frames, wire = message["frames"], Wire.of(message)
        prepared: list[Any] = []
        size = written = 0
        for position, index in enumerate(picked):
            frame = frames[index]
            execution_id = frame["execution_id"]
            self._heard(execution_id)
            self._remember(execution_id, frame["seq"])
            prepared.append(wire.frames[index])
            size += len(wire.frames[index].payloadHybi)
            if wire.completes[index] is not None and execution_id not in self.completed:
                self.completed.add(execution_id)
                prepared.append(wire.completes[index])
            if size < WRITE_CHUNK_BYTES and position < len(picked) - 1:
                continue
            write(protocol, prepared)
            written, prepared, size = written + len(prepared), [], 0
            if self.outbox.stalled and position < len(picked) - 1:
                self._rest = (message, picked[position + 1 :])
                break
        _SENT.add(written)

    async def _write_rest(self) -> None:
        """Go on with a message the transport could not take whole (in turn with other deliveries), skipping
        what a catch-up sent meanwhile."""
        if self._rest is None or self.outbox.stalled:
            return
        async with self._delivery:
            protocol, rest = self._protocol, self._rest
            if rest is None or self.outbox.stalled:
                return
            self._rest = None
            if protocol is None or protocol.state != OPEN:
                return
            message, indices = rest
            frames, account_id = message["frames"], message.get("account_id")
            picked = []
            for index in indices:
                execution_id, seq = frames[index]["execution_id"], frames[index]["seq"]
                last = self.last_seq.get(execution_id)
                if self._wants(execution_id, account_id) and (last is None or seq > last):
                    picked.append(index)
            if picked:
                self._write_picked(protocol, message, picked)

    async def _pump(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._pumping = True
            try:
                while self.outbox.messages:
                    await self._write_rest()  # first: its frames come before the queued ones
                    if not self.outbox.messages:  # cleared meanwhile: the connection is closing
                        break
                    await self.execution_events(self.outbox.messages.popleft())
                await self._write_rest()
                if self.behind and not self.outbox.stalled and self._rest is None:
                    await self._catch_up_behind()
            finally:
                self._pumping = False

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
            self._catch_up_schedule()  # looked at within CATCH_UP_EVERY, not after a long quiet period

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
        texts = Wire.of(message).texts
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

    def _heard(self, execution_id: str) -> None:
        self.last_frame_at[execution_id] = time.monotonic()
        self.quiet_rounds.pop(execution_id, None)

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
