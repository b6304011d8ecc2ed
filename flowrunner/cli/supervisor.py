"""`flowrunner worker`: the Celery worker as a child process, started again when it dies on its own."""

# Celery ends its main process on an "Unrecoverable error" (exit 1) and nothing brings it back unless a
# process manager does. This loop is that process manager for a bare `flowrunner worker` (a shell, a
# container without a restart policy); under systemd or compose `restart:` it is a second line, not the only
# one. A clean exit (0) or a configuration problem is final; a crash or a kill it did not send is restarted
# after a back-off that grows while the worker keeps dying young and resets once it has run a while.
#
# Signals: SIGTERM and SIGQUIT are forwarded (warm and cold shutdown) and end supervision; SIGHUP, SIGUSR1
# and SIGUSR2 are forwarded as they are. SIGINT ends supervision without being forwarded: a terminal's
# Ctrl-C already reaches the worker, which shares this process group (a second SIGINT would make Celery's
# shutdown cold). The worker dies with this process (PR_SET_PDEATHSIG) so no orphan keeps consuming.

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

# 2: usage (argparse, click), 3: the encryption key does not match the database's, 64/78: EX_USAGE/EX_CONFIG.
FINAL_CODES = frozenset({0, 2, 3, 64, 78})
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
# A worker that ran this long before dying is restarted after the first back-off again.
STEADY_AFTER = 60.0
_FORWARDED = (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_STOPPING = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not glibc Linux: the worker then outlives a SIGKILLed supervisor, as a bare celery would


def _say(message: str) -> None:
    print(f"flowrunner worker: {message}", file=sys.stderr, flush=True)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def supervise(
    argv: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = _say,
) -> int:
    """Run `argv` until it exits cleanly, with a final code, or this process is asked to stop; return its code."""
    state = {"stopping": False, "child": None}

    def on_signal(signum: int, _frame: object) -> None:
        if signum in _STOPPING:
            state["stopping"] = True
        child = state["child"]
        if signum in _FORWARDED and child is not None and child.returncode is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in {*_FORWARDED, *_STOPPING}}
    backoff = BACKOFF_FIRST
    restarts = 0
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(list(argv), preexec_fn=_die_with_parent)
            state["child"] = child
            say(
                f"started the Celery worker (pid {child.pid})" + (f", restart {restarts}" if restarts else "")
            )
            code = child.wait()
            ran = time.monotonic() - started
            if state["stopping"] or code in FINAL_CODES:
                return code if code >= 0 else 128 - code
            if ran >= STEADY_AFTER:
                backoff = BACKOFF_FIRST
            restarts += 1
            say(
                f"the Celery worker (pid {child.pid}) {_describe(code)} after {ran:.1f}s: "
                f"starting it again in {backoff:g}s"
            )
            deadline = time.monotonic() + backoff
            while not state["stopping"] and time.monotonic() < deadline:
                sleep(min(0.2, deadline - time.monotonic()))
            if state["stopping"]:
                return code if code >= 0 else 128 - code
            backoff = min(backoff * 2, BACKOFF_MAX)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
