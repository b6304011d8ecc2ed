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

import contextlib
import ctypes
import functools
import json
import os
import resource
import signal
import struct
import sys
import time
import traceback
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException, MiniRacer

# The one nesting limit of stored JSON (core.json imports nothing of Django, so the host can load it).
from core.json import MAX_DEPTH

# A promise callback runs after the main eval returns and the closing eval waits behind it: that one gets at
# least this long even when the script used up its own time.
MIN_FINISH_SECONDS = 0.1

_LENGTH = struct.Struct(">I")

# Run once per context. Everything a script could change and the next script could see is frozen, removed
# or swept: builtins (prototypes and constructors), the global object's properties and prototype, RegExp's
# legacy last-match statics. Only `__flowrunner.run/finish` is left for Python to call.
BOOTSTRAP_JS = r"""
(() => {
'use strict';
const G = globalThis, FunctionCtor = Function, ErrorCtor = Error, StringCtor = String;
const { defineProperty, freeze, getOwnPropertyDescriptor: describeKey, getPrototypeOf, isExtensible } =
  Object;
const { ownKeys, deleteProperty } = Reflect;
const { stringify, parse } = JSON;
const MAX_LINES = 1000, MAX_MESSAGE = 8192, MAX_DATA = 65536, MAX_LOG_CHARS = 1 << 20;
const MAX_DEPTH = __MAX_DEPTH__;
const own = (value) => ({ value, writable: true, enumerable: true, configurable: true });

// Binary buffers live outside the V8 heap, where the memory limit does not see them; FinalizationRegistry
// callbacks would run during some later call.
for (const n of ['ArrayBuffer', 'SharedArrayBuffer', 'DataView', 'Atomics', 'WebAssembly',
  'FinalizationRegistry', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array',
  'Int32Array', 'Uint32Array', 'Float16Array', 'Float32Array', 'Float64Array', 'BigInt64Array',
  'BigUint64Array']) deleteProperty(G, n);
// mini-racer's setTimeout shim is made of `var`s (non-configurable): they can only be emptied.
for (const n of ['setTimeout', 'clearTimeout', '__timer_manager']) defineProperty(G, n, { value: undefined });
// RegExp.$1, lastMatch... would show the next script what the previous one matched.
for (const n of ['input', '$_', 'lastMatch', '$&', 'lastParen', '$+', 'leftContext', '$`', 'rightContext',
  "$'", '$1', '$2', '$3', '$4', '$5', '$6', '$7', '$8', '$9']) deleteProperty(RegExp, n);

let logs = [], logChars = 0, dropped = 0, reported = 0;
const json = (value) => {  // JSON that survives BigInt and cycles, for console output
  const ancestors = [];
  return stringify(value, function (key, v) {
    if (typeof v === 'bigint') return v + 'n';
    if (typeof v !== 'object' || v === null) return v;
    while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
    if (ancestors.includes(v)) return '[Circular]';
    ancestors.push(v);
    return v;
  });
};
// Nesting of a JSON text, by one pass over it: deeper values would exhaust Python's stack downstream.
const jsonDepth = (s) => {
  let depth = 0, max = 0, inString = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) { if (++depth > max) max = depth; }
    else if (c === 93 || c === 125) depth--;
  }
  return max;
};
const errorText = (e) => {
  const name = StringCtor(e.name), message = StringCtor(e.message);
  return message ? name + ': ' + message : name;
};
const text = (v) => {  // as Node prints a console argument, except that objects are JSON
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : StringCtor(v);
  if (typeof v === 'bigint') return v + 'n';
  if (typeof v === 'symbol') return v.toString();
  if (typeof v === 'function') return '[Function: ' + (v.name || '(anonymous)') + ']';
  if (typeof v !== 'object' || v === null) return StringCtor(v);
  try {
    if (v instanceof ErrorCtor) return errorText(v);
    const s = json(v);
    if (s !== undefined) return s;
  } catch (e) { /* fall back to String() */ }
  try { return StringCtor(v); } catch (e) { return '[object]'; }
};
const record = (level, args) => {
  if (logs.length >= MAX_LINES || logChars >= MAX_LOG_CHARS) { dropped++; return; }
  let message = args.map((a) => text(a)).join(' '), data = 'null';
  if (message.length > MAX_MESSAGE) message = message.slice(0, MAX_MESSAGE) + '... [truncated]';
  try {
    const objects = args.filter((a) => a !== null && typeof a === 'object' && !(a instanceof ErrorCtor));
    if (objects.length) data = json(objects.length === 1 ? objects[0] : objects) ?? 'null';
  } catch (e) { /* data is optional */ }
  if (data.length > MAX_DATA || jsonDepth(data) > MAX_DEPTH) data = 'null';
  const line = '[' + stringify(level) + ',' + stringify(message) + ',' + data + ']';
  logChars += line.length;
  logs.push(line);
};
const consoleObject = {};
for (const [method, level] of [['log', 'info'], ['info', 'info'], ['warn', 'warn'], ['error', 'error'],
  ['debug', 'debug'], ['trace', 'debug']]) {
  consoleObject[method] = function (...args) { record(level, args); };
}
defineProperty(G, 'console', { value: consoleObject, writable: true, configurable: true });

// Frozen builtins would break `obj.toString = ...` or `this.name = ...` in an Error subclass (assigning over
// an inherited read-only property); as in SES, such properties become accessors setting an own property.
const tame = (obj, key) => {
  const d = describeKey(obj, key);
  if (!d || !('value' in d) || !d.writable || !d.configurable) return;
  const set = function (v) {
    if (this === obj) throw new TypeError('Cannot assign to read only property of a built-in');
    if (Object(this) === this) defineProperty(this, key, own(v));
  };
  defineProperty(obj, key, { enumerable: d.enumerable, configurable: false, get: () => d.value, set });
};
for (const k of ownKeys(Object.prototype)) tame(Object.prototype, k);
const OVERRIDDEN = ['constructor', 'toString', 'toLocaleString', 'valueOf', 'toJSON', 'name', 'message'];
for (const k of ownKeys(G)) {
  const proto = typeof G[k] === 'function' ? G[k].prototype : undefined;
  if (Object(proto) === proto) for (const n of OVERRIDDEN) tame(proto, n);
}
// Freeze everything reachable from the globals, and intrinsics no global names (async and generator
// functions, iterators, iterator helpers, segments).
const globalProto = getPrototypeOf(G), roots = [globalProto, consoleObject], seen = new Set();
for (const k of ownKeys(G)) roots.push(describeKey(G, k).value);
for (const make of [() => async function () {}, () => function* () {}, () => async function* () {},
  () => (function* () {})(), () => (async function* () {})(), () => [][Symbol.iterator](),
  () => new Map()[Symbol.iterator](), () => new Set()[Symbol.iterator](), () => ''[Symbol.iterator](),
  () => /x/[Symbol.matchAll](''), () => [].values().map((x) => x),
  () => Iterator.from({ next: () => ({ done: true }) }), () => new Intl.Segmenter().segment(''),
  () => new Intl.Segmenter().segment('')[Symbol.iterator](), () => (function () { return arguments; })()]) {
  try { roots.push(make()); } catch (e) { /* not in this V8 */ }
}
while (roots.length) {
  const o = roots.pop();
  if (Object(o) !== o || o === G || seen.has(o)) continue;
  seen.add(o);
  freeze(o);
  roots.push(getPrototypeOf(o));
  for (const k of ownKeys(o)) {
    const d = describeKey(o, k);
    roots.push(d.value, d.get, d.set);
  }
}

// JSON.stringify escapes lone surrogates, so encodeURIComponent cannot throw here.
const encode = encodeURIComponent, bytes = unescape, utf8Length = (s) => bytes(encode(s)).length;
const describe = (e) => {  // line: the innermost frame in the user's code (counted from the Function header)
  try {
    if (!(e instanceof ErrorCtor)) return { message: 'Uncaught ' + text(e), line: null };
    const m = /flowscript:(\d+):\d+/.exec(StringCtor(e.stack));
    return { message: errorText(e), line: m ? Number(m[1]) : null };
  } catch (x) {
    return { message: 'Uncaught exception', line: null };
  }
};
const logsJson = () => {
  const lines = logs.slice();
  const limits = '(limit ' + MAX_LINES + ' lines, ' + MAX_LOG_CHARS + ' characters)';
  if (dropped) lines.push(stringify(['warn', dropped + ' more console lines dropped ' + limits, null]));
  reported = logs.length;
  return '[' + lines.join(',') + ']';
};
const fail = (message, line = null) => '[0,' + stringify({ message, line }) + ',' + logsJson() + ']';
const sweep = () => {
  for (const k of ownKeys(G)) if (!baseline.has(k)) deleteProperty(G, k);
  // The shim's class is a script-scope binding, the one global binding a script can reassign.
  try { __TimerManager = undefined; } catch (e) { /* absent in this mini-racer */ }
};

const runner = freeze({
  run(body, globalsJson, maxOutput) {
    sweep();
    logs = []; logChars = 0; dropped = 0; reported = 0;
    const values = parse(globalsJson);
    for (const k of ownKeys(values)) if (!baseline.has(k)) defineProperty(G, k, own(values[k]));
    // new Function parses the body on its own, so it cannot close the wrapper and leave code at global
    // scope. A SyntaxError escapes uncaught: mini-racer's message carries its line.
    const fn = new FunctionCtor(body + '\n//# sourceURL=flowscript');
    let value, out, d;
    try { value = fn(); } catch (e) { return fail((d = describe(e)).message, d.line); }
    try {
      if (Object(value) === value && typeof value.then === 'function') {
        return fail('script returned a Promise: scripts run synchronously and async results are not awaited');
      }
      out = stringify(value) ?? 'null';
    } catch (e) {
      d = describe(e);
      return fail('script returned a value that cannot be converted to JSON: ' + d.message, d.line);
    }
    if (out.length * 3 > maxOutput) {  // UTF-8 takes at most 3 bytes per UTF-16 unit
      const size = utf8Length(out);
      if (size > maxOutput) return fail(`script output is ${size} bytes, over the limit of ${maxOutput}`);
    }
    if (jsonDepth(out) > MAX_DEPTH) return fail(`script output is nested more than ${MAX_DEPTH} levels deep`);
    return '[1,' + out + ',' + logsJson() + ']';
  },
  finish() {  // a separate eval: promise callbacks run between the two, so sweep after them
    sweep();
    const clean = isExtensible(G) && getPrototypeOf(G) === globalProto
      && ownKeys(G).every((k) => baseline.has(k));
    const late = '[' + logs.slice(reported).join(',') + ']';
    reported = logs.length;
    return '[' + clean + ',' + late + ']';
  },
});
defineProperty(G, '__flowrunner', { value: runner });
for (const k of ownKeys(G)) {  // a builtin global can be neither replaced nor deleted
  const d = describeKey(G, k);
  defineProperty(G, k, 'value' in d ? { writable: false, configurable: false } : { configurable: false });
}
const baseline = new Set(ownKeys(G));
})();
"""


BOOTSTRAP_JS = BOOTSTRAP_JS.replace("__MAX_DEPTH__", str(MAX_DEPTH))


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


def _quiet_closed_loop(previous: Any, unraisable: Any) -> None:
    # mini-racer closes its event loop before freeing the context, so the answer to a task it just cancelled
    # (the timed-out script) lands on a closed loop and is printed as an ignored exception; drop only that.
    exc = unraisable.exc_value
    if not (isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)):
        previous(unraisable)


class Engine:
    """One V8 context reused across calls; replaced after a timeout, an out-of-memory or a dirty global."""

    def __init__(self) -> None:
        self._racer: MiniRacer | None = None

    def context(self) -> MiniRacer:
        if self._racer is None:
            racer = MiniRacer()
            racer.eval(BOOTSTRAP_JS)
            self._racer = racer
        return self._racer

    def discard(self) -> None:
        racer, self._racer = self._racer, None
        if racer is not None:
            previous = sys.unraisablehook
            sys.unraisablehook = functools.partial(_quiet_closed_loop, previous)
            try:
                racer.close()  # also stops a promise callback still looping in the isolate
            finally:
                sys.unraisablehook = previous

    def call(self, code: str, timeout: float, max_memory: int) -> tuple[dict[str, Any], str, str]:
        """Eval `code` (a `__flowrunner.run(...)` call), then `__flowrunner.finish()` → (reply, envelope,
        finish); a compile error is reported in the reply, the bootstrap's try/catch answers the rest."""
        racer, started, reply, envelope = self.context(), time.monotonic(), {"status": "ok"}, ""
        try:
            try:
                envelope = racer.eval(code, timeout_sec=timeout, max_memory=max_memory)
            except (JSTimeoutException, JSOOMException):
                raise
            except JSEvalException as exc:  # only a compile error escapes the bootstrap's try/catch
                reply["compile_error"] = str(exc)
            # Promise callbacks run after `run` returns; this eval waits behind them, within the limit.
            remaining = max(timeout - (time.monotonic() - started), MIN_FINISH_SECONDS)
            finish = racer.eval("__flowrunner.finish()", timeout_sec=remaining)
        except JSTimeoutException:
            self.discard()
            return {"status": "timeout"}, "", ""
        except JSOOMException:
            self.discard()  # the context keeps the leaked heap
            return {"status": "memory"}, "", ""
        except JSEvalException as exc:
            self.discard()
            return {"status": "terminated", "message": (str(exc).splitlines() or [""])[0]}, "", ""
        if not finish.startswith("[true,"):
            self.discard()  # an undeletable global, a frozen or re-parented globalThis: start afresh
        return reply, envelope, finish


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
