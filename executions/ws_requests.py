"""The client frames of the live WebSocket: subscribe, unsubscribe, subscribe_account, ping; flood control."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings

from core.errors import NotFound
from executions.events import account_group, execution_group
from executions.ws_frames import (
    FrameError,
    complete_frame,
    parse_execution_id,
    parse_since,
    server_frame,
    short,
)
from executions.ws_inbox import FLOOD_CLOSE_CODE, MAX_BACKLOG_BYTES, MAX_BACKLOG_FRAMES
from executions.ws_selectors import subscription_open

logger = logging.getLogger(__name__)

CLIENT_TYPES = ("subscribe", "unsubscribe", "subscribe_account", "ping")


class ClientFrames:
    """The ExecutionConsumer's handling of what the client sends (a mixin: the state lives on the consumer)."""

    account_id: str
    subscriptions: set[str]
    account_subscribed: bool

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
                raise FrameError(f"unknown type {short(kind)}; expected one of {', '.join(CLIENT_TYPES)}")
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
        # Join before reading, holding delivery: a frame committed meanwhile waits (in this consumer's channel
        # or outbox) and is then either sent (newer than the snapshot) or dropped as a duplicate.
        async with self._delivery:
            await self._join(group)
            try:
                opened = await subscription_open(
                    account_id=self.account_id, execution_id=execution_id, since=since
                )
            except NotFound:
                await self._leave(group)
                raise FrameError("execution not found", execution_id=execution_id)
            except Exception:
                # A database hiccup ends this subscribe, not the connection: the client may simply retry.
                logger.exception("websocket subscribe to %s failed", execution_id)
                await self._leave(group)
                raise FrameError("subscription failed; try again", execution_id=execution_id)
            self.subscriptions.add(execution_id)
            self.behind.pop(execution_id, None)
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
            self._heard(execution_id)
            self._catch_up_schedule()

    async def _unsubscribe(self, frame: dict[str, Any]) -> None:
        execution_id = parse_execution_id(frame)
        if execution_id not in self.subscriptions:
            return
        self.subscriptions.discard(execution_id)
        await self._leave(execution_group(execution_id))
        if not self.account_subscribed:
            # A later subscribe starts a new subscription (with its own snapshot) from scratch.
            self.last_seq.pop(execution_id, None)
            self.completed.discard(execution_id)
        self.last_frame_at.pop(execution_id, None)
        self.quiet_rounds.pop(execution_id, None)

    async def _subscribe_account(self) -> None:
        if self.account_subscribed:
            return
        self._check_room(None)
        await self._join(account_group(self.account_id))
        self.account_subscribed = True

    def _check_room(self, execution_id: str | None) -> None:
        limit = settings.FLOWRUNNER_WS_MAX_SUBSCRIPTIONS
        if len(self.subscriptions) + int(self.account_subscribed) >= limit:
            raise FrameError(
                f"too many subscriptions: at most {limit} per connection", execution_id=execution_id
            )
