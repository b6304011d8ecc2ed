"""The V8 script sandbox: one reused mini-racer context per worker process, per-call globals and limits."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException, MiniRacer

MIB = 1024 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 128
DEFAULT_MAX_OUTPUT_BYTES = MIB
# The hard limit is checked after GCs, so an allocation burst overshoots it; V8's own heap ceiling (~1.5 GB)
# is fatal to the whole process, so the per-call limit must stay well below it.
MAX_MEMORY_MB = 512
# A promise callback runs after the main eval returns and the closing eval waits behind it: that one gets at
# least this long even when the script used up its own time.
MIN_FINISH_SECONDS = 0.1
# new Function() puts "function anonymous(\n) {\n" before the body, so body line 1 is source line 3.
FUNCTION_HEADER_LINES = 2

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
  if (data.length > MAX_DATA) data = 'null';
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
    """A script failed; `line` is 1-based in the user's script, `kind` is "error", "timeout" or "memory"."""

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


def _quiet_closed_loop(previous: Any, unraisable: Any) -> None:
    # mini-racer closes its event loop before freeing the context, so the answer to a task it just cancelled
    # (the timed-out script) lands on a closed loop and is printed as an ignored exception; drop only that.
    exc = unraisable.exc_value
    if not (isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)):
        previous(unraisable)


_live: weakref.WeakSet[ScriptSandbox] = weakref.WeakSet()


class ScriptSandbox:
    """One V8 context reused across calls, serialized by a lock (the embedded worker is threaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._racer: MiniRacer | None = None
        _live.add(self)

    def warm_up(self) -> None:
        """Create the context now (at worker start) rather than on the first script."""
        with self._lock:
            self._context()

    def close(self) -> None:
        with self._lock:
            self._discard()

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

    def _context(self) -> MiniRacer:
        if self._racer is None:
            racer = MiniRacer()
            racer.eval(BOOTSTRAP_JS)
            self._racer = racer
        return self._racer

    def _discard(self) -> None:
        racer, self._racer = self._racer, None
        if racer is not None:
            previous = sys.unraisablehook
            sys.unraisablehook = functools.partial(_quiet_closed_loop, previous)
            try:
                racer.close()  # also stops a promise callback still looping in the isolate
            finally:
                sys.unraisablehook = previous

    def _call(self, body, line_offset, values, timeout, memory_mb, max_output) -> tuple[Any, list[LogLine]]:
        memory_mb = max(1, min(int(memory_mb), MAX_MEMORY_MB))
        limit = memory_mb * MIB
        # NaN has no JSON form; refusing it here beats a JSON.parse error blamed on the script.
        globals_json = json.dumps(values or {}, separators=(",", ":"), default=str, allow_nan=False)
        code = f"__flowrunner.run({json.dumps(body)},{json.dumps(globals_json)},{int(max_output)})"
        with self._lock:
            racer, started, compile_error, envelope = self._context(), time.monotonic(), None, None
            try:
                try:
                    envelope = racer.eval(code, timeout_sec=timeout, max_memory=limit)
                except (JSTimeoutException, JSOOMException):
                    raise
                except JSEvalException as exc:  # only a compile error escapes the bootstrap's try/catch
                    compile_error = str(exc)
                # Promise callbacks run after `run` returns; this eval waits behind them, within the limit.
                remaining = max(timeout - (time.monotonic() - started), MIN_FINISH_SECONDS)
                clean, late_logs = json.loads(racer.eval("__flowrunner.finish()", timeout_sec=remaining))
            except JSTimeoutException:
                self._discard()
                raise ScriptTimeout(f"script exceeded its time limit of {timeout:g}s") from None
            except JSOOMException:
                self._discard()  # the context keeps the leaked heap
                raise ScriptMemoryError(f"script exceeded its memory limit of {memory_mb} MB") from None
            except JSEvalException as exc:
                self._discard()
                raise ScriptError(f"script was terminated: {str(exc).splitlines()[0]}") from None
            if not clean:
                self._discard()  # an undeletable global, a frozen or re-parented globalThis: start afresh
        if compile_error is not None:
            match = _COMPILE_ERROR.match(compile_error)
            if not match:
                raise ScriptError(compile_error.splitlines()[0])
            raise ScriptError(match.group(2), line=self._user_line(int(match.group(1)), line_offset))
        ok, payload, raw_logs = json.loads(envelope)
        logs = [LogLine(level, message, data) for level, message, data in raw_logs + late_logs]
        if not ok:
            line = self._user_line(payload["line"], line_offset)
            raise ScriptError(payload["message"], line=line, logs=logs)
        return payload, logs

    @staticmethod
    def _user_line(raw_line: int | None, line_offset: int) -> int | None:
        line = raw_line - FUNCTION_HEADER_LINES - line_offset if raw_line else 0
        return line if line >= 1 else None


_instance: ScriptSandbox | None = None
_instance_lock = threading.Lock()


def get_sandbox() -> ScriptSandbox:
    """The process-wide sandbox, created on first use (its V8 context is created lazily too)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = ScriptSandbox()
        return _instance


def _close_before_fork() -> None:
    # A forked child could neither use nor even close (it hangs) a V8 context copied from its parent, whose
    # isolate thread is not copied: close them all first, each process then makes its own on first use.
    for sandbox in list(_live):
        sandbox.close()


def _new_locks_in_child() -> None:
    # Another thread of the parent may have held a lock at the moment of the fork.
    global _instance_lock
    _instance_lock = threading.Lock()
    for sandbox in list(_live):
        sandbox._lock = threading.Lock()


os.register_at_fork(before=_close_before_fork, after_in_child=_new_locks_in_child)


def warm_up() -> None:
    """Create this process's V8 context now; call it from the worker's process-init signal."""
    get_sandbox().warm_up()
