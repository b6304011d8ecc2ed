"""The server frames of the live WebSocket that are not stored events, and parsing of client frames."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.utils import timezone

from executions.models import TERMINAL_EXECUTION_STATUSES

# Largest `since` accepted (as the REST logs endpoint): event seqs are PostgreSQL integers.
MAX_SINCE = 2**31


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


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


def short(value: Any) -> str:
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
        raise FrameError(f"`execution_id` is not a valid UUID: {short(value)}")


def parse_since(frame: dict[str, Any], execution_id: str) -> int | None:
    since = frame.get("since")
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_SINCE:
        raise FrameError(f"`since` must be an integer from 0 to {MAX_SINCE}", execution_id=execution_id)
    return since
