"""The V8 script sandbox's isolation: nothing leaks between calls; time, memory and stack limits; one per process."""

from __future__ import annotations

import threading
import time

import pytest

from tests.workers.conftest import run
from workers.sandbox import LogLine, ScriptError, ScriptMemoryError, ScriptTimeout, get_sandbox


@pytest.mark.parametrize(
    ("attack", "check", "expected"),
    [
        ("JSON.stringify = () => 'x'", "JSON.stringify({a: 1})", '{"a":1}'),
        ("Math.random = () => 4", "Math.random() < 1", True),
        ("console.log = null", "typeof console.log", "function"),
        ("JSON = 5", "typeof JSON", "object"),
        ("delete globalThis.Object", "typeof Object", "function"),
        ("Function.prototype.call = null", "typeof Function.prototype.call", "function"),
        ("Object.getPrototypeOf([][Symbol.iterator]()).next = null", "[...[1, 2]].length", 2),
        (
            "Object.getPrototypeOf(async function () {}).leak = 1",
            "Object.getPrototypeOf(async () => 1).leak",
            None,
        ),
        ("Object.getPrototypeOf(globalThis).leak = 1", "typeof leak", "undefined"),
        ("Object.setPrototypeOf(globalThis, {leak: 1})", "typeof leak", "undefined"),
        ("Error.prepareStackTrace = () => 'forged'", "typeof Error.prepareStackTrace", "undefined"),
        ("/secret-(\\w+)/.exec('secret-abc')", "typeof RegExp.$1", "undefined"),
        ("__TimerManager = {stash: secrets}", "typeof __TimerManager", "undefined"),
    ],
)
def test_sandbox_builtins_cannot_be_changed_for_later_calls(sandbox, attack, check, expected):
    # given a script that tries to change a builtin (strict mode, so refusals throw; they are swallowed)
    run(sandbox, f"'use strict';\ntry {{ {attack}; }} catch (e) {{}}\nreturn 1")
    # when a later script uses it
    outcome = run(sandbox, f"return {check}")
    # then it behaves as a fresh context would
    assert outcome.value == expected


def test_sandbox_undeletable_global_gets_a_fresh_context(sandbox):
    # given a script that makes a global it set impossible to delete, and one that freezes globalThis
    run(sandbox, "Object.defineProperty(globalThis, 'stuck', {value: 1, configurable: false}); return 1")
    after_stuck = run(sandbox, "return typeof stuck")
    run(sandbox, "Object.freeze(globalThis); return 1")
    # when later calls run
    after_freeze = run(sandbox, "return [input.x, Object.isExtensible(globalThis)]")
    # then they see a clean global object (the context was replaced)
    assert after_stuck.value == "undefined"
    assert after_freeze.value == [1, True]


def test_sandbox_promise_callbacks_cannot_leak_past_the_call(sandbox):
    # given a script whose promise callback sets a global and logs after the script returned
    first = run(
        sandbox, "Promise.resolve().then(() => { globalThis.late = 1; console.log('late'); }); return 1"
    )
    # when the next call looks
    second = run(sandbox, "return typeof late")
    # then the late log belongs to the first call and the global is gone
    assert first.logs == [LogLine("info", "late", None)]
    assert second.value == "undefined"


def test_sandbox_chained_promise_callbacks_all_belong_to_their_call(sandbox):
    # given a script whose callbacks queue further callbacks (each `then` and `await` is a later microtask)
    source = """
const step = async (name) => { await null; console.log(name); };
Promise.resolve()
  .then(() => step('a'))
  .then(() => console.log('b'))
  .then(() => { globalThis.lateChain = 1; console.log('c'); });
return 1;
"""
    # when it runs, and the next call looks
    first = run(sandbox, source)
    second = run(sandbox, "return typeof lateChain")
    # then every callback ran within the first call, in order, and left nothing behind
    assert [line.message for line in first.logs] == ["a", "b", "c"]
    assert second.value == "undefined"


def test_sandbox_error_subclass_can_set_its_name(sandbox):
    # given common code that assigns over inherited builtin properties (frozen prototypes must allow it)
    source = """
class NotFound extends Error { constructor(m) { super(m); this.name = 'NotFound'; } }
const o = {};
o.toString = () => 'custom';
throw new NotFound(String(o));
"""
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, source)
    # then both assignments worked
    assert str(caught.value) == "NotFound: custom (line 5)"


def test_sandbox_infinite_loop_times_out_and_the_next_call_works(sandbox):
    # given a script that never ends and a half-second limit
    started = time.monotonic()
    # when it runs
    with pytest.raises(ScriptTimeout) as caught:
        run(sandbox, "while (true) {}", timeout=0.5)
    elapsed = time.monotonic() - started
    # then it is stopped within the bound, with a clear message, and the sandbox still works
    assert 0.4 < elapsed < 2.0
    assert str(caught.value) == "script exceeded its time limit of 0.5s"
    assert caught.value.kind == "timeout"
    assert run(sandbox, "return input.x").value == 1


def test_sandbox_looping_promise_callback_times_out_in_its_own_call(sandbox):
    # given a script that returns at once but leaves a promise callback that loops forever
    started = time.monotonic()
    # when it runs
    with pytest.raises(ScriptTimeout):
        run(sandbox, "Promise.resolve().then(() => { while (true) {} }); return 1", timeout=0.5)
    # then the callback is charged to that call and the next call is not blocked by it
    assert time.monotonic() - started < 2.0
    assert run(sandbox, "return 'next'", timeout=1).value == "next"


def test_sandbox_memory_bomb_raises_memory_error_and_the_next_call_works(sandbox):
    # given a script that allocates without bound and a 64 MB limit
    source = "const a = [];\nwhile (true) a.push(new Array(10000).fill('x'.repeat(10)));"
    # when it runs
    with pytest.raises(ScriptMemoryError) as caught:
        run(sandbox, source, memory_mb=64, timeout=20)
    # then the limit stops it (the process survives) and the next call gets a fresh heap
    assert str(caught.value) == "script exceeded its memory limit of 64 MB"
    assert caught.value.kind == "memory"
    assert run(sandbox, "return input.items.length").value == 3


def test_sandbox_promise_callback_over_the_memory_limit_is_a_memory_error(sandbox):
    # given a script that returns at once but leaves a promise callback that allocates without bound
    source = (
        "Promise.resolve().then(() => { const a = [];"
        " while (true) a.push(new Array(10000).fill('x'.repeat(10))); });\nreturn 1"
    )
    # when it runs
    with pytest.raises(ScriptMemoryError) as caught:
        run(sandbox, source, memory_mb=64, timeout=20)
    # then the callback's overrun fails the call (V8 stops a callback silently) and the next call works
    assert str(caught.value) == "script exceeded its memory limit of 64 MB"
    assert run(sandbox, "return 'next'").value == "next"


def test_sandbox_binary_buffers_outside_the_heap_limit_are_unavailable(sandbox):
    # given buffer types whose memory the heap limit would not count
    # when a script looks for them
    outcome = run(
        sandbox, "return [typeof ArrayBuffer, typeof Uint8Array, typeof SharedArrayBuffer, typeof Atomics]"
    )
    # then they are not there
    assert outcome.value == ["undefined"] * 4


def test_sandbox_deep_recursion_is_a_script_error(sandbox):
    # given unbounded recursion
    # when it runs
    with pytest.raises(ScriptError) as caught:
        run(sandbox, "function f(n) { return f(n + 1) + 1; }\nreturn f(0);")
    # then it is an ordinary script error naming the stack overflow
    assert "Maximum call stack size exceeded" in str(caught.value)
    assert caught.value.kind == "error"
    assert run(sandbox, "return 1").value == 1


def test_sandbox_get_sandbox_is_one_process_wide_instance_safe_across_threads():
    # given the process-wide sandbox, warmed up
    box = get_sandbox()
    box.warm_up()
    results: dict[int, object] = {}

    def worker(n: int) -> None:
        results[n] = get_sandbox().run("return input.n * 2", globals={"input": {"n": n}}).value

    # when several threads run scripts at once
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every call got its own globals, through the one shared instance
    assert get_sandbox() is box
    assert results == {n: n * 2 for n in range(8)}


def _child_runs_a_script(results) -> None:
    import gc

    gc.collect()  # dropping anything inherited must not hang on the parent's V8 thread
    results.put(get_sandbox().run("return input.n + 1", globals={"input": {"n": 1}}).value)


def test_sandbox_forked_child_gets_its_own_context():
    # given a process whose sandbox context is warm (as a prefork parent's might be)
    import multiprocessing

    get_sandbox().warm_up()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    # when it forks a child that runs a script
    child = context.Process(target=_child_runs_a_script, args=(results,))
    child.start()
    child.join(timeout=30)
    # then the child worked with a context of its own and the parent's still works
    assert child.exitcode == 0
    assert results.get(timeout=5) == 2
    assert get_sandbox().run("return 3").value == 3
