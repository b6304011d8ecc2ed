"""The sandbox host: a child process of the worker that owns the V8 isolate, so a V8 crash spares the worker.

V8 stops the whole process on some allocations no heap limit catches (`new Array(2**30).fill(0)` aborts with
"Fatal JavaScript out of memory: invalid table size"). Run in the worker itself, such a script killed the pool
process, lost the task, and the reaper re-drove it into the next crash. Here only this process dies; the
worker (workers.sandbox) reports the node failed and starts a new host. It talks to the worker over its stdin
and stdout in frames (4-byte big-endian length, then the bytes), one request at a time:

    request: header {"op": "call", "timeout": s, "max_memory": bytes} (JSON), then the code to eval
    reply:   header {"status": "ok" | "timeout" | "memory" | "terminated", ...}, then the envelope and the
             finish() answer (empty when the status is not ok)

The host runs with a minimal environment (no FlowRunner settings, keys or passwords), no core dumps, and is
not dumpable: a script that broke out of V8 would find nothing of the worker's in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import signal
import struct
import sys
import time
import traceback
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException, MiniRacer, mini_racer

from workers.sandbox_bootstrap import BOOTSTRAP_JS

# A promise callback runs after the main eval returns and the closing eval waits behind it: that one gets at
# least this long even when the script used up its own time.
MIN_FINISH_SECONDS = 0.1

_LENGTH = struct.Struct(">I")


# --- framing (shared with the worker side) --------------------------------------------------------------


def frame(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Reader:
    """Frames from a pipe, cut from a buffer: a request's frames usually arrive in one read."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, bytearray()

    def exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            chunk = os.read(self.fd, max(size - len(self.buffer), 1 << 16))
            if not chunk:
                return None
            self.buffer += chunk
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def frame(self) -> bytes | None:
        head = self.exactly(_LENGTH.size)
        if head is None:
            return None
        return self.exactly(_LENGTH.unpack(head)[0])


# --- the V8 context -------------------------------------------------------------------------------------


async def _within(eval_task: asyncio.Task[Any], timeout: float) -> Any:
    """The eval's value, or JSTimeoutException once `timeout` has passed (the task is then cancelled, which has
    mini-racer terminate the script)."""
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        eval_task.cancel()

    expiry = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await eval_task
    except asyncio.CancelledError:
        if expired:
            raise JSTimeoutException from None
        raise
    finally:
        expiry.cancel()


class Engine:
    """One V8 context reused across calls; replaced after a timeout, an out-of-memory or a dirty global.

    The context's answers come back on an event loop this process's own thread runs while a call is under way
    (mini-racer's default is a loop on a thread of its own, which costs every eval two more thread hand-offs:
    about a third of a warm call, more when the host was idle)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._owner: contextlib.AbstractContextManager[MiniRacer] | None = None
        self._racer: MiniRacer | None = None

    def context(self) -> MiniRacer:
        if self._racer is None:
            self._loop.run_until_complete(self._open())
        assert self._racer is not None
        return self._racer

    async def _open(self) -> None:
        owner = mini_racer(self._loop)
        racer = owner.__enter__()
        try:
            racer.eval(BOOTSTRAP_JS)  # on the loop: waits for V8 without a timeout (our own code)
        except BaseException:
            owner.__exit__(None, None, None)
            raise
        self._owner, self._racer = owner, racer

    def discard(self) -> None:
        owner, self._owner, self._racer = self._owner, None, None
        if owner is not None:
            owner.__exit__(None, None, None)  # frees the isolate: a promise callback still looping stops

    def call(self, code: str, timeout: float, max_memory: int) -> tuple[dict[str, Any], str, str]:
        """Eval `code` (a `__flowrunner.run(...)` call), then `__flowrunner.finish()` → (reply, envelope,
        finish); a compile error is reported in the reply, the bootstrap's try/catch answers the rest."""
        racer = self.context()
        return self._loop.run_until_complete(self._call(racer, code, timeout, max_memory))

    async def _call(
        self, racer: MiniRacer, code: str, timeout: float, max_memory: int
    ) -> tuple[dict[str, Any], str, str]:
        reply: dict[str, Any] = {"status": "ok"}
        racer.set_hard_memory_limit(max_memory)
        # Both evals are handed to V8 at once: its thread runs the script, then the promise callbacks the script
        # queued (mini-racer's pump runs a microtask checkpoint after every task), then the closing eval,
        # without waiting for this thread in between (two thread hand-offs fewer a call). A task a script could
        # queue for later (setTimeout, Atomics.waitAsync, WebAssembly compilation, FinalizationRegistry) would
        # run after the closing eval, in the next call: the bootstrap removes every such source.
        run = self._loop.create_task(racer.eval_cancelable(code))
        closing = self._loop.create_task(racer.eval_cancelable("__flowrunner.finish()"))
        try:
            envelope, finish = await _run_then_close(run, closing, reply, timeout)
        except JSTimeoutException:
            self.discard()
            return {"status": "timeout"}, "", ""
        except JSOOMException:
            self.discard()  # the context keeps the leaked heap
            return {"status": "memory"}, "", ""
        except JSEvalException as exc:
            self.discard()
            return {"status": "terminated", "message": (str(exc).splitlines() or [""])[0]}, "", ""
        if racer.was_hard_memory_limit_reached():
            # A promise callback went over the limit: V8 stopped it between the two evals without an error.
            self.discard()
            return {"status": "memory"}, "", ""
        if not finish.startswith("[true,"):
            self.discard()  # an undeletable global, a frozen or re-parented globalThis: start afresh
        return reply, envelope, finish


async def _run_then_close(
    run: asyncio.Task[Any], closing: asyncio.Task[Any], reply: dict[str, Any], timeout: float
) -> tuple[str, str]:
    """The script's envelope and the closing eval's answer; a compile error goes into `reply`. On any failure
    both evals are cancelled before it propagates, so neither outlives the call."""
    started, envelope = time.monotonic(), ""
    try:
        try:
            envelope = await _within(run, timeout)
        except (JSTimeoutException, JSOOMException):
            raise
        except JSEvalException as exc:  # only a compile error escapes the bootstrap's try/catch
            reply["compile_error"] = str(exc)
        # The closing eval waits behind the promise callbacks: it gets what is left of the limit.
        remaining = max(timeout - (time.monotonic() - started), MIN_FINISH_SECONDS)
        return envelope, await _within(closing, remaining)
    except BaseException:
        for task in (run, closing):
            task.cancel()
        await asyncio.wait((run, closing))
        for task in (run, closing):
            if not task.cancelled():
                task.exception()  # retrieved, or asyncio would log it as never retrieved
        raise


# --- the host process -----------------------------------------------------------------------------------


def _harden() -> None:
    """No core file (it would hold the call's secrets), no ptrace or /proc/<pid>/mem by same-user processes.
    SIGTERM and SIGINT (sent to the worker's whole process group on shutdown) are ignored: the host lives as
    long as its worker process, whose warm shutdown may still be running a script; it leaves when the pipe
    closes."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
            libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS = 38


def _send(fd: int, reply: dict[str, Any], *bodies: str) -> None:
    parts = [frame(json.dumps(reply).encode())]
    parts += [frame(body.encode("utf-8", "surrogatepass")) for body in bodies]
    write_all(fd, b"".join(parts))


def main() -> None:
    """Serve requests on stdin/stdout until stdin closes (the worker went away), then exit at once."""
    _harden()
    reader, replies = _Reader(0), os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the replies
    engine = Engine()
    try:
        engine.context()
        _send(replies, {"status": "ready", "pid": os.getpid()})
        while True:
            header = reader.frame()
            body = reader.frame() if header is not None else None
            if body is None:
                break
            request = json.loads(header)
            if request.get("op") != "call":
                _send(replies, {"status": "error", "message": f"unknown op {request.get('op')!r}"}, "", "")
                continue
            reply, envelope, finish = engine.call(
                body.decode("utf-8", "surrogatepass"), float(request["timeout"]), int(request["max_memory"])
            )
            _send(replies, reply, envelope, finish)
    except BrokenPipeError:
        status = 0
    except BaseException:
        traceback.print_exc()  # to the worker's log: e.g. V8 could not start
        status = 1
    else:
        status = 0
    sys.stderr.flush()
    # Interpreter shutdown with a live V8 context can hang in mini-racer's teardown: leave at once.
    os._exit(status)


if __name__ == "__main__":
    main()
