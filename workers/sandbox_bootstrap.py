"""The JavaScript every sandbox context runs once before any script: it hardens the context and defines the
`__flowrunner.run/finish` entry points the host calls (plain data: the host process imports it, nothing else).
"""

# The one nesting limit of stored JSON (core.json imports nothing of Django, so the host can load it).
from core.json import MAX_DEPTH

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
