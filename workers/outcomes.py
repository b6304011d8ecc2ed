"""What running a node came to: the Outcome of a kind's hook (never an exception) and the retry directive."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from accounts.vault import VaultError
from flows.nodes.base import NodeError, NodeResult, NodeTimeoutError
from workers.context import EngineContext, LogEntry

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What running a node came to, before the engine decides what follows."""

    ok: bool
    output: Any = None
    action: str = "success"
    error: str = ""
    error_type: str = "error"
    retryable: bool = True
    timed_out: bool = False
    defer_seconds: float | None = None
    logs: list[LogEntry] = field(default_factory=list)


@dataclass
class RetryLater:
    """The task must hand `node_run_id` back to Celery's retry machinery with this countdown."""

    node_run_id: int
    countdown: float


def execute(kind_call: Any, ctx: EngineContext) -> Outcome:
    """Run a kind's hook and turn whatever it returns or raises into an Outcome (never raises)."""
    try:
        result = kind_call(ctx)
        if not isinstance(result, NodeResult):
            result = NodeResult(output=result)
        return Outcome(
            ok=True,
            output=result.output,
            action=result.action or "success",
            defer_seconds=result.defer_seconds,
            logs=ctx.redacted_logs(),
        )
    except NodeTimeoutError as exc:
        return _failure(ctx, exc.message, exc.type, retryable=True, timed_out=True)
    except NodeError as exc:
        return _failure(ctx, exc.message, exc.type, retryable=exc.retryable, timed_out=False)
    except VaultError as exc:  # another worker's key, or a rotated one: retrying here cannot fix it
        return _failure(
            ctx,
            f"the account's secrets could not be decrypted on this worker ({exc}); check that every process "
            "has the same FLOWRUNNER_ENCRYPTION_KEY",
            "secrets_error",
            retryable=False,
            timed_out=False,
        )
    except SoftTimeLimitExceeded:
        limit = f" of {ctx.timeout:g}s" if ctx.timeout else ""
        return _failure(ctx, f"node exceeded its timeout{limit}", "timeout", retryable=True, timed_out=True)
    except Exception as exc:  # a bug in a kind must fail the node, not wedge the execution
        logger.exception("node %s raised unexpectedly", ctx.node.id)
        return _failure(
            ctx, f"{type(exc).__name__}: {exc}", "internal_error", retryable=True, timed_out=False
        )


def _failure(
    ctx: EngineContext, message: str, error_type: str, *, retryable: bool, timed_out: bool
) -> Outcome:
    return Outcome(
        ok=False,
        error=ctx.redactor.text(message),
        error_type=error_type,
        retryable=retryable,
        timed_out=timed_out,
        action="timeout" if timed_out else "error",
        logs=ctx.redacted_logs(),
    )


MAX_OUTPUT_DEPTH = 100


def output_problem(output: Any) -> str | None:
    """Why a node's output cannot join the document (too deep, too large), or None. For every kind, not only
    scripts (the sandbox refuses deep values itself): an http.request body parsed from a 900-level JSON answer
    would otherwise raise RecursionError in redaction after the node finished, outside execute(), and leave
    the run `running` for the reaper to re-drive forever."""
    stack = [(output, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_OUTPUT_DEPTH:
                return f"node output is nested more than {MAX_OUTPUT_DEPTH} levels deep"
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    size = len(json.dumps(output, default=str))
    if size > settings.FLOWRUNNER_MAX_DOCUMENT_BYTES:
        return f"node output is {size} bytes, over the limit of {settings.FLOWRUNNER_MAX_DOCUMENT_BYTES}"
    return None
