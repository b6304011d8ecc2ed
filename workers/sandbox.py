"""The V8 script sandbox: per-call globals and limits; V8 runs in a host process (workers.sandbox_host).

The worker keeps one host process, started on first use (or by warm_up() at worker start) and reused across
calls, which are serialized by a lock (the embedded worker is threaded). A script that crashes V8 kills only
the host: the call fails with kind "crash" and the next call starts a new host. A host that does not answer
within its script's time limit plus a grace period is killed (kind "timeout").
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.json import MAX_DEPTH
from workers.sandbox_host import _LENGTH, MIN_FINISH_SECONDS, frame, write_all

MIB = 1024 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 128
DEFAULT_MAX_OUTPUT_BYTES = MIB
# The hard limit is checked after GCs, so an allocation burst overshoots it; V8's own heap ceiling (~1.5 GB)
# aborts the host process, so the per-call limit must stay well below it.
MAX_MEMORY_MB = 512
# new Function() puts "function anonymous(\n) {\n" before the body, so body line 1 is source line 3.
FUNCTION_HEADER_LINES = 2
# The host enforces the script's time limit itself; past the limit plus this, it is presumed stuck and killed.
HOST_GRACE_SECONDS = 5.0
HOST_START_TIMEOUT = 60.0
# What the host may inherit of the worker's environment: nothing of FlowRunner's (keys, database password).
_HOST_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])

__all__ = [
    "MAX_DEPTH",
    "LogLine",
    "ScriptCrash",
    "ScriptError",
    "ScriptMemoryError",
    "ScriptOutcome",
    "ScriptSandbox",
    "ScriptTimeout",
    "get_sandbox",
    "warm_up",
]


@dataclass(frozen=True)
class LogLine:
    level: str  # info (console.log and .info), warn, error, debug (console.debug and .trace)
    message: str
    data: Any = None  # the object argument(s), JSON-decoded, if any


@dataclass(frozen=True)
class ScriptOutcome:
    value: Any
    logs: list[LogLine] = field(default_factory=list)


class ScriptError(Exception):
    """A script failed; `line` is 1-based in the user's script, `kind` is "error", "timeout", "memory" or
    "crash" (V8 aborted the host process, e.g. on an allocation too large for any heap limit)."""

    kind = "error"

    def __init__(self, message: str, *, line: int | None = None, kind: str | None = None, logs: Any = None):
        self.message, self.line, self.kind = message, line, kind or self.kind
        self.logs: list[LogLine] = logs or []  # console output before the failure
        self.script: str | None = None  # the `name` given to run()
        super().__init__(f"{message} (line {line})" if line else message)


class ScriptTimeout(ScriptError):
    kind = "timeout"


class ScriptMemoryError(ScriptError):
    kind = "memory"


class ScriptCrash(ScriptError):
    kind = "crash"


_COMPILE_ERROR = re.compile(r"^[^\n]*?:(\d+): ([^\n]*)")  # "flowscript:5: SyntaxError: ..."
# Comments and string/template literals, blanked before looking for `import(` (newlines kept for the line).
_LITERALS = re.compile(
    r"""//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`""", re.DOTALL
)
_DYNAMIC_IMPORT = re.compile(r"(?<![\w$.])import\s*\(")


@functools.lru_cache(maxsize=512)
def _dynamic_import_line(source: str) -> int | None:
    # V8 only rejects import() asynchronously ("Not supported"), which a script that never awaits the promise
    # would not notice; refuse it up front. (Not a full lexer: a miss falls back to V8's rejection.)
    match = _DYNAMIC_IMPORT.search(_LITERALS.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), source))
    return source.count("\n", 0, match.start()) + 1 if match else None


class _HostGone(Exception):
    """The host process closed its pipe (it died) or, with `timed_out`, did not answer in time."""

    def __init__(self, reason: str, *, timed_out: bool = False, before_request: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out
        self.before_request = before_request


class _Host:
    """One host process and its pipes; used by one ScriptSandbox under its lock."""

    def __init__(self) -> None:
        env = {key: os.environ[key] for key in _HOST_ENV_KEYS if key in os.environ}
        env["PYTHONPATH"] = _PROJECT_ROOT
        self.process = subprocess.Popen(
            [sys.executable, "-s", "-c", "from workers.sandbox_host import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=_PROJECT_ROOT,
            close_fds=True,
            bufsize=0,
        )
        self._out = self.process.stdin.fileno()
        self._in = self.process.stdout.fileno()
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(self._in, select.POLLIN)
        try:
            reply, _bodies = self._receive(time.monotonic() + HOST_START_TIMEOUT, bodies=0)
        except _HostGone as exc:
            self.kill()
            raise ScriptError(f"the script sandbox could not start: {exc}") from None
        if reply.get("status") != "ready":
            self.kill()
            raise ScriptError(f"the script sandbox could not start: {reply}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, code: str, timeout: float, max_memory: int) -> tuple[dict[str, Any], str, str]:
        header = json.dumps({"op": "call", "timeout": timeout, "max_memory": max_memory}).encode()
        try:
            write_all(self._out, frame(header) + frame(code.encode("utf-8", "surrogatepass")))
        except OSError as exc:  # BrokenPipeError: the host was gone before it got the request
            raise _HostGone(str(exc), before_request=True) from None
        reply, (envelope, finish) = self._receive(
            time.monotonic() + timeout + MIN_FINISH_SECONDS + HOST_GRACE_SECONDS, bodies=2
        )
        return reply, envelope, finish

    def _receive(self, deadline: float, *, bodies: int) -> tuple[dict[str, Any], list[str]]:
        header = self._read_frame(deadline)
        texts = [self._read_frame(deadline).decode("utf-8", "surrogatepass") for _ in range(bodies)]
        return json.loads(header), texts

    def _read_frame(self, deadline: float) -> bytes:
        size = _LENGTH.unpack(self._read_exactly(_LENGTH.size, deadline))[0]
        return self._read_exactly(size, deadline)

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        # A reply's frames usually arrive in one write: read what is there into a buffer and cut the frames
        # from it, rather than a select() and a read() for each length prefix and each body.
        buffer = self._buffer
        while len(buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000):
                raise _HostGone("no answer in time", timed_out=True)
            chunk = os.read(self._in, max(size - len(buffer), 1 << 16))
            if not chunk:
                raise _HostGone("the process ended")
            buffer += chunk
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def exit_description(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            try:
                return f"V8 aborted it with signal {signal.Signals(-code).name}"
            except ValueError:
                return f"it died of signal {-code}"
        return f"it exited with status {code}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.forget()

    def forget(self) -> None:
        """Close this process's ends of the pipes without touching the host (a forked child's copy)."""
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


_live: weakref.WeakSet[ScriptSandbox] = weakref.WeakSet()


class ScriptSandbox:
    """One host process (one V8 context) reused across calls, serialized by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host: _Host | None = None
        _live.add(self)

    def warm_up(self) -> None:
        """Start the host (and its V8 context) now, at worker start, rather than on the first script."""
        with self._lock:
            self._running_host()

    def close(self) -> None:
        with self._lock:
            self._stop_host()

    def run(
        self,
        source: str,
        *,
        globals: dict[str, Any] | None = None,  # noqa: A002 - the name scripts know them by
        name: str = "script",
        timeout: float = DEFAULT_TIMEOUT,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> ScriptOutcome:
        """Run `source` as the body of a parameterless function; its return value comes back JSON-decoded."""
        try:
            if (line := _dynamic_import_line(source)) is not None:
                raise ScriptError("import() is not available: scripts cannot load modules", line=line)
            value, logs = self._call(source, 0, globals, timeout, memory_mb, max_output_bytes)
        except ScriptError as exc:
            exc.script = name
            raise
        return ScriptOutcome(value=value, logs=logs)

    def evaluate(
        self,
        expression: str,
        *,
        globals: dict[str, Any] | None = None,  # noqa: A002
        timeout: float = DEFAULT_TIMEOUT,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> Any:
        """The value of one JS expression (a `${...}` segment); its console output is dropped."""
        if not expression.strip():
            raise ScriptError("empty expression")
        if _dynamic_import_line(expression) is not None:
            raise ScriptError("import() is not available: scripts cannot load modules")
        # On lines of its own, so that a trailing `// comment` cannot swallow the closing parenthesis.
        body = f"return (\n{expression}\n);"
        return self._call(body, 1, globals, timeout, memory_mb, max_output_bytes)[0]

    def _running_host(self) -> _Host:
        if self._host is not None and not self._host.alive():
            self._stop_host()  # died while idle (killed from outside): replace it quietly
        if self._host is None:
            self._host = _Host()
        return self._host

    def _stop_host(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.kill()

    def _forget_host(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.forget()

    def _call(self, body, line_offset, values, timeout, memory_mb, max_output) -> tuple[Any, list[LogLine]]:
        memory_mb = max(1, min(int(memory_mb), MAX_MEMORY_MB))
        # NaN has no JSON form; refusing it here beats a JSON.parse error blamed on the script.
        globals_json = json.dumps(values or {}, separators=(",", ":"), default=str, allow_nan=False)
        code = f"__flowrunner.run({json.dumps(body)},{json.dumps(globals_json)},{int(max_output)})"
        with self._lock:
            reply, envelope, finish = self._host_call(code, float(timeout), memory_mb)
        status = reply.get("status")
        if status == "timeout":
            raise ScriptTimeout(f"script exceeded its time limit of {timeout:g}s")
        if status == "memory":
            raise ScriptMemoryError(f"script exceeded its memory limit of {memory_mb} MB")
        if status != "ok":
            raise ScriptError(f"script was terminated: {reply.get('message') or status}")
        compile_error = reply.get("compile_error")
        if compile_error is not None:
            match = _COMPILE_ERROR.match(compile_error)
            if not match:
                raise ScriptError(compile_error.splitlines()[0])
            raise ScriptError(match.group(2), line=self._user_line(int(match.group(1)), line_offset))
        try:
            ok, payload, raw_logs = json.loads(envelope)
            _clean, late_logs = json.loads(finish)
        except RecursionError:  # the bootstrap refuses deep values first; this is the last line of defence
            raise ScriptError(f"script output is nested more than {MAX_DEPTH} levels deep") from None
        logs = [LogLine(level, message, data) for level, message, data in raw_logs + late_logs]
        if not ok:
            line = self._user_line(payload["line"], line_offset)
            raise ScriptError(payload["message"], line=line, logs=logs)
        return payload, logs

    def _host_call(self, code: str, timeout: float, memory_mb: int) -> tuple[dict[str, Any], str, str]:
        for attempt in (1, 2):
            host = self._running_host()
            try:
                return host.call(code, timeout, memory_mb * MIB)
            except _HostGone as gone:
                self._stop_host()
                if gone.before_request and attempt == 1:
                    continue  # it died while idle, between the liveness check and the request: retry once
                if gone.timed_out:
                    raise ScriptTimeout(f"script exceeded its time limit of {timeout:g}s") from None
                raise ScriptCrash(
                    f"script crashed the sandbox ({host.exit_description()}); the usual cause is an "
                    f"allocation too large for the {memory_mb} MB memory limit"
                ) from None
            except BaseException:
                # Interrupted mid-request (Celery's soft time limit, KeyboardInterrupt): the host's answer
                # would be read by the next call, so this host cannot be trusted any more.
                self._stop_host()
                raise
        raise AssertionError("unreachable")

    @staticmethod
    def _user_line(raw_line: int | None, line_offset: int) -> int | None:
        line = raw_line - FUNCTION_HEADER_LINES - line_offset if raw_line else 0
        return line if line >= 1 else None


_instance: ScriptSandbox | None = None
_instance_lock = threading.Lock()


def get_sandbox() -> ScriptSandbox:
    """The process-wide sandbox, created on first use (its host process is started lazily too)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = ScriptSandbox()
        return _instance


def _after_fork_in_child() -> None:
    # The child shares the parent's pipes to the parent's host: it must neither use nor stop that host. It
    # forgets it (closing only its own copies of the pipe ends) and starts its own on first use. Another
    # thread of the parent may have held a lock at the moment of the fork.
    global _instance_lock
    _instance_lock = threading.Lock()
    for sandbox in list(_live):
        sandbox._lock = threading.Lock()
        sandbox._forget_host()


os.register_at_fork(after_in_child=_after_fork_in_child)


def warm_up() -> None:
    """Start this process's sandbox host now; call it from the worker's process-init signal."""
    get_sandbox().warm_up()
