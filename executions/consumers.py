"""The live WebSocket (/api/v1/ws, DESIGN §6): subscriptions to executions, replay, snapshots, live frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from executions.events import account_group, execution_group
from executions.models import TERMINAL_EXECUTION_STATUSES
from executions.ws_inbox import FLOOD_CLOSE_CODE, MAX_BACKLOG_BYTES, MAX_BACKLOG_FRAMES, Inbox
from executions.ws_selectors import events_between, subscription_open
from flowrunner.exceptions import NotFound

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

CLIENT_TYPES = ("subscribe", "unsubscribe", "subscribe_account", "ping")
# Executions seen only through subscribe_account are forgotten oldest-first past this many, so a long-lived
# account subscription keeps bounded memory (an individually subscribed execution is never forgotten).
DEDUPE_CAPACITY = 4096
# Largest `since` accepted (as the REST logs endpoint): event seqs are PostgreSQL integers.
MAX_SINCE = 2**31
# A subscribed execution that has not ended and sent nothing for this long is read back from PostgreSQL: the
# channel layer may drop a frame (Redis restarted, a full channel), and a lost *last* frame would otherwise
# never be noticed — the gap fill only runs when a later frame arrives.
CATCH_UP_AFTER = 2.0
CATCH_UP_EVERY = 1.0


class FrameError(Exception):
    """A client frame the server cannot act on; answered with an `error` frame, the connection stays open."""

    def __init__(self, message: str, *, execution_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.execution_id = execution_id


def server_frame(
    type_: str, *, execution_id: str | None = None, seq: int | None = None, **extra: Any
) -> dict:
    return {
        "type": type_,
        "execution_id": execution_id,
        "seq": seq,
        "timestamp": timezone.now().isoformat(),
        **extra,
    }


def is_terminal_status(frame: dict[str, Any]) -> bool:
    status = frame.get("status")
    return (
        frame.get("type") == "status"
        and isinstance(status, dict)
        and (status.get("status") in TERMINAL_EXECUTION_STATUSES)
    )


def complete_frame(status_frame: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "complete",
        "execution_id": status_frame["execution_id"],
        "seq": status_frame["seq"],
        "timestamp": status_frame.get("timestamp") or timezone.now().isoformat(),
        "message": f"Execution completed with status: {status_frame['status']['status']}",
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_execution_id(frame: dict[str, Any]) -> str:
    """The canonical UUID string events carry, so it keys the dedupe map the same way live frames do."""
    value = frame.get("execution_id")
    if value is None:
        raise FrameError("`execution_id` is required")
    if not isinstance(value, str):
        raise FrameError("`execution_id` must be a string (a UUID)")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise FrameError(f"`execution_id` is not a valid UUID: {_short(value)}")


def parse_since(frame: dict[str, Any], execution_id: str) -> int | None:
    since = frame.get("since")
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_SINCE:
        raise FrameError(f"`since` must be an integer from 0 to {MAX_SINCE}", execution_id=execution_id)
    return since


class ExecutionConsumer(AsyncWebsocketConsumer):
    """One connection. The handshake guard (executions.ws_auth) has put `account_id` in the scope."""

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
        self._delivery = asyncio.Lock()
        self._catch_up_task: asyncio.Task | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        self.inbox = Inbox(receive, send)
        return await super().__call__(scope, receive, send)

    # --- connection -------------------------------------------------------------------------------------

    async def connect(self) -> None:
        account_id = self.scope.get("account_id")
        if account_id is None:  # only reachable if routing bypassed the guard; refuse rather than guess
            await self.close()
            return
        self.account_id = str(account_id)
        await self.accept()
        self._catch_up_task = asyncio.create_task(self._catch_up_loop())

    async def disconnect(self, code: int) -> None:
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._catch_up_task
            self._catch_up_task = None
        groups = [execution_group(execution_id) for execution_id in self.subscriptions]
        if self.account_subscribed:
            groups.append(account_group(self.account_id))
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.subscriptions.clear()
        self.account_subscribed = False

    # --- client frames ----------------------------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        inbox = self.inbox
        if inbox is not None:
            inbox.taken(message)
            if inbox.flooded and not self._closing:
                self._closing = True
                dropped = inbox.drop_waiting()
                logger.warning(
                    "websocket client %s flooded its connection; closing", self.scope.get("client")
                )
                await self._send(
                    server_frame(
                        "error",
                        message=f"too many frames waiting (at most {MAX_BACKLOG_FRAMES} frames or "
                        f"{MAX_BACKLOG_BYTES} bytes); {dropped} dropped, closing the connection",
                    )
                )
                await self.close(code=FLOOD_CLOSE_CODE)
            if self._closing:
                inbox.drop_waiting()
                return
        await super().websocket_receive(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = self._decode(text_data, bytes_data)
            kind = frame.get("type")
            if kind == "subscribe":
                await self._subscribe(frame)
            elif kind == "unsubscribe":
                await self._unsubscribe(frame)
            elif kind == "subscribe_account":
                await self._subscribe_account()
            elif kind == "ping":
                await self._send(server_frame("pong"))
            elif kind is None:
                raise FrameError(f"`type` is required; one of {', '.join(CLIENT_TYPES)}")
            else:
                raise FrameError(f"unknown type {_short(kind)}; expected one of {', '.join(CLIENT_TYPES)}")
        except FrameError as error:
            await self._send(server_frame("error", execution_id=error.execution_id, message=error.message))
        except Exception:
            # A bug or an outage (Redis) answers this frame; it does not end the connection with 1011.
            logger.exception("websocket frame failed")
            await self._send(server_frame("error", message="internal error; try again"))

    def _decode(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if text_data is None:
            raise FrameError("binary frames are not supported; send JSON text frames")
        limit = settings.FLOWRUNNER_WS_MAX_FRAME_BYTES
        # len() in characters is a cheap lower bound of the UTF-8 size; encode only when it may be close.
        if len(text_data) > limit or (len(text_data) * 4 > limit and len(text_data.encode("utf-8")) > limit):
            raise FrameError(f"frame too large: at most {limit} bytes")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise FrameError("malformed JSON")
        except RecursionError:
            raise FrameError("malformed JSON: nested too deeply")
        if not isinstance(frame, dict):
            raise FrameError("a frame must be a JSON object")
        return frame

    async def _subscribe(self, frame: dict[str, Any]) -> None:
        execution_id = parse_execution_id(frame)
        since = parse_since(frame, execution_id)
        if execution_id in self.subscriptions:
            return
        self._check_room(execution_id)
        group = execution_group(execution_id)
        # Join before reading: a frame committed meanwhile waits in this consumer's channel and is then
        # either sent (newer than the snapshot) or dropped as a duplicate, so nothing falls in between.
        await self.channel_layer.group_add(group, self.channel_name)
        try:
            opened = await subscription_open(
                account_id=self.account_id, execution_id=execution_id, since=since
            )
        except NotFound:
            await self.channel_layer.group_discard(group, self.channel_name)
            raise FrameError("execution not found", execution_id=execution_id)
        except Exception:
            # A database hiccup ends this subscribe, not the connection: the client may simply retry.
            logger.exception("websocket subscribe to %s failed", execution_id)
            await self.channel_layer.group_discard(group, self.channel_name)
            raise FrameError("subscription failed; try again", execution_id=execution_id)
        async with self._delivery:
            self.subscriptions.add(execution_id)
            # The stored events go out verbatim, even a terminal status among them: `complete` follows the
            # snapshot, so a late subscriber sees it exactly once.
            for payload in opened.replay:
                await self._send(payload)
            snapshot = opened.snapshot
            await self._send(snapshot)
            if opened.terminal:
                await self._send(complete_frame(snapshot))
                self.completed.add(execution_id)
            else:
                self.completed.discard(execution_id)
            self._remember(execution_id, max(snapshot["seq"], self.last_seq.get(execution_id, 0)))
            self.last_frame_at[execution_id] = time.monotonic()

    async def _unsubscribe(self, frame: dict[str, Any]) -> None:
        execution_id = parse_execution_id(frame)
        if execution_id not in self.subscriptions:
            return
        self.subscriptions.discard(execution_id)
        await self.channel_layer.group_discard(execution_group(execution_id), self.channel_name)
        if not self.account_subscribed:
            # A later subscribe starts a new subscription (with its own snapshot) from scratch.
            self.last_seq.pop(execution_id, None)
            self.completed.discard(execution_id)
        self.last_frame_at.pop(execution_id, None)

    async def _subscribe_account(self) -> None:
        if self.account_subscribed:
            return
        self._check_room(None)
        await self.channel_layer.group_add(account_group(self.account_id), self.channel_name)
        self.account_subscribed = True

    def _check_room(self, execution_id: str | None) -> None:
        limit = settings.FLOWRUNNER_WS_MAX_SUBSCRIPTIONS
        if len(self.subscriptions) + int(self.account_subscribed) >= limit:
            raise FrameError(
                f"too many subscriptions: at most {limit} per connection", execution_id=execution_id
            )

    # --- live frames from the channel layer (executions.events.broadcast_frame) -------------------------

    async def execution_events(self, message: dict[str, Any]) -> None:
        """The frames of one committed transaction, in seq order."""
        frames = message.get("frames")
        if not isinstance(frames, list):
            return
        for frame in frames:
            await self.execution_event({"frame": frame, "account_id": message.get("account_id")})

    async def execution_event(self, message: dict[str, Any]) -> None:
        frame = message.get("frame") or {}
        execution_id = frame.get("execution_id")
        seq = frame.get("seq")
        if not isinstance(execution_id, str) or not isinstance(seq, int):
            return
        wanted = execution_id in self.subscriptions or (
            self.account_subscribed and str(message.get("account_id")) == self.account_id
        )
        if not wanted:  # e.g. still queued from before an unsubscribe, or a subscribe that was refused
            return
        async with self._delivery:
            await self._fill_and_deliver(frame, execution_id, seq)

    async def _fill_and_deliver(self, frame: dict[str, Any], execution_id: str, seq: int) -> None:
        last = self.last_seq.get(execution_id)
        if last is not None and seq > last + 1:
            # Broadcasts from different processes may overtake each other; the store is gapless and every
            # event below a broadcast one has committed, so the missing ones are read back in order.
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
        await self._deliver(frame)

    async def _catch_up_loop(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_EVERY)
            now = time.monotonic()
            quiet = [
                execution_id
                for execution_id in self.subscriptions
                if execution_id not in self.completed
                and now - self.last_frame_at.get(execution_id, 0.0) >= CATCH_UP_AFTER
            ]
            for execution_id in quiet:
                try:
                    async with self._delivery:
                        if execution_id not in self.subscriptions or execution_id in self.completed:
                            continue
                        self.last_frame_at[execution_id] = time.monotonic()
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

    async def _deliver(self, frame: dict[str, Any]) -> None:
        execution_id = frame["execution_id"]
        last = self.last_seq.get(execution_id)
        if last is not None and frame["seq"] <= last:
            return  # a duplicate (reached through two groups) or a step backwards
        self.last_frame_at[execution_id] = time.monotonic()
        await self._send(frame)
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
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))
