"""py-spy sampling of a worker (main process and pool children) and a summary of where task time goes."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 200
# Frames that mark a sample as "inside a task" (Celery's tracer calls the task body from here).
TASK_FRAME = re.compile(r"^(trace_task|build_tracer\.<locals>\.trace_task) \(celery/app/trace\.py")
# Leaf-first: the first frame whose file matches names the sample's category (its self time).
CATEGORIES = (
    ("psycopg/", "PostgreSQL client (psycopg: send, wait, parse)"),
    ("py_mini_racer/", "V8 sandbox (mini-racer)"),
    ("channels_redis/", "Channels layer (channels_redis)"),
    ("redis/", "Redis client (broker publish, results, channel layer)"),
    ("kombu/", "kombu (message encoding, publish)"),
    ("django/db/models/sql/", "Django ORM: SQL compilation"),
    ("django/db/", "Django ORM: models, querysets, backends"),
    ("asgiref/", "asgiref (async_to_sync)"),
    ("json/", "json"),
    ("celery/", "Celery"),
    ("billiard/", "billiard (prefork pool)"),
    ("django/", "Django (other)"),
    ("workers/", "FlowRunner workers/ (own code)"),
    ("executions/", "FlowRunner executions/ (own code)"),
    ("flows/", "FlowRunner flows/ (own code)"),
    ("accounts/", "FlowRunner accounts/ (own code)"),
)
# Inclusive time of these FlowRunner steps (a sample counts once per step on its stack).
PHASES = (
    ("claim (workers/engine.py)", "claim ("),
    ("make_context: secrets, document copy", "make_context ("),
    ("execute: run the node kind", "execute ("),
    ("sandbox call (workers/sandbox.py _call)", "ScriptSandbox._call ("),
    ("finish: record result, advance", "finish ("),
    ("record_event (event insert + seq)", "record_event ("),
    ("_next_seq (seq UPDATE … RETURNING)", "_next_seq ("),
    ("execution_status (status frame body)", "execution_status ("),
    ("on_commit callbacks (after commit)", "run_and_clear_commit_hooks ("),
    ("broadcast_frame (channel layer)", "broadcast_frame ("),
    ("send_now (enqueue next node)", "send_now ("),
    ("transaction commit", "Atomic.__exit__ ("),
    ("spec_for_version", "flow_version_spec ("),
    ("secrets_decrypted", "secrets_decrypted ("),
    ("Celery result store (backend)", "mark_as_done ("),
    ("Django fixup: close/check connections", "DjangoWorkerFixup.on_task_"),
)


def available() -> bool:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) is not None or bool(
        shutil.which("py-spy")
    )


def start(pid: int, output: Path) -> subprocess.Popen:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    argv = [exe, "record", "--pid", str(pid), "--subprocesses", "--idle", "--rate", str(RATE)]
    argv += ["--format", "raw", "--output", str(output), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return (err or b"").decode("utf-8", "replace")[-2000:]


def _frame_name(frame: str) -> str:
    """`func (file.py:123)` → `func (file.py)`: lines of one function are added together."""
    return re.sub(r":\d+\)$", ")", frame)


def analyse(path: Path, top: int = 25) -> dict[str, Any]:
    """Shares of samples: main process vs pool children, in-task vs idle, and inside tasks by function,
    by self-time category and by FlowRunner phase."""
    total = main = child = in_task = 0
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        processes = sum(1 for f in frames if f.startswith("process "))
        total += count
        if processes <= 1:
            main += count
            continue
        child += count
        frames = [f for f in frames if not f.startswith("process ")]
        start = next((i for i, f in enumerate(frames) if TASK_FRAME.match(f)), None)
        if start is None:
            continue
        in_task += count
        body = [_frame_name(f) for f in frames[start + 1 :]]
        for name in set(body):
            inclusive[name] += count
        if body:
            leaf[body[-1]] += count
        categories[_category(frames)] += count
        for label, marker in PHASES:
            if any(marker in f for f in body):
                phases[label] += count

    def shares(counter: Counter[str], limit: int | None = None) -> list[dict[str, Any]]:
        return [
            {"name": name, "share_of_task_time": round(n / in_task, 4) if in_task else 0.0, "samples": n}
            for name, n in counter.most_common(limit)
        ]

    return {
        "samples": total,
        "rate_hz": RATE,
        "main_process_share": round(main / total, 4) if total else 0.0,
        "pool_children_share": round(child / total, 4) if total else 0.0,
        "in_task_share_of_children": round(in_task / child, 4) if child else 0.0,
        "by_category_self": shares(categories),
        "by_phase_inclusive": shares(phases),
        "top_inclusive": shares(inclusive, top),
        "top_self": shares(leaf, top),
        "note": "wall-clock samples (--idle) of the pool children while they ran tasks: waiting for "
        "PostgreSQL/Redis counts, as it delays the node run",
    }


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for marker, name in CATEGORIES:
            if f"({marker}" in frame or f" {marker}" in frame or f"/{marker}" in frame:
                return name
    return "other (interpreter, stdlib)"
