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

RATE = 100  # py-spy's own CPU competes with the workers on a small machine
# Frames that mark a sample as "inside a task" (Celery's tracer calls the task body from here).
TASK_FRAME = re.compile(r"^(trace_task|build_tracer\.<locals>\.trace_task) \(celery/app/trace\.py")
# Leaf-first: the first frame whose file matches names the sample's category (its self time).
CATEGORIES = (
    ("psycopg/", "PostgreSQL client (psycopg: send, wait, parse)"),
    ("py_mini_racer/", "V8 sandbox (mini-racer)"),
    ("channels_redis/", "Channels layer (channels_redis)"),
    ("channels/", "Channels (consumers, routing)"),
    ("daphne/", "daphne"),
    ("twisted/", "Twisted (daphne's reactor)"),
    ("autobahn/", "autobahn (WebSocket protocol)"),
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
# Leaves that mean "this thread is waiting" (for PostgreSQL, Redis, V8's thread, or a lock), not computing.
WAITING = re.compile(
    r"^(Connection\.wait|wait_\w+|wait|Condition\.wait|Event\.wait|select|poll|_read_from_socket|recv\w*|"
    r"read|sleep|BaseConnection\._exec_command|_exec_command)( |$)"
)
# Where a FlowRunner node run spends its time: the project's own functions, inclusive.
PROJECT = ("workers/", "executions/", "flows/", "accounts/")


def available() -> bool:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) is not None or bool(
        shutil.which("py-spy")
    )


def start(pid: int, output: Path, *, wall_clock: bool = True, children: bool = True) -> subprocess.Popen:
    """Sample `pid` and (`children`) its children: `wall_clock` samples threads that wait too (py-spy --idle);
    otherwise only threads holding the GIL (--gil: Python CPU time; a C-level wait such as psycopg's is not
    counted)."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    argv = [exe, "record", "--pid", str(pid), *(["--subprocesses"] if children else []), "--threads"]
    argv += ["--rate", str(RATE)]
    argv += ["--idle"] if wall_clock else ["--gil"]
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


def _parse(frame: str) -> tuple[str, str]:
    """`Class.func (path/file.py:12)` → ("Class.func", "path/file.py")."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    return (match.group(1), match.group(2)) if match else (frame, "")


def analyse(path: Path, worker_pid: int, top: int = 25) -> dict[str, Any]:
    """Shares of wall-clock samples (--idle): the worker's main process, the pool children's main threads
    (in a task or not) and their other threads; inside tasks: by function, self-time category, and waiting."""
    counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    side_threads: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        frames = stack.split(";")
        pids = [int(m.group(1)) for f in frames if (m := re.match(r"^process (\d+):", f))]
        tids = [int(m.group(1)) for f in frames if (m := re.match(r"^thread \((\d+)\)", f))]
        body = [f for f in frames if not f.startswith(("process ", "thread ("))]
        pid = pids[-1] if pids else 0
        counts["all"] += n
        if pid == worker_pid:
            counts["main_process"] += n
            continue
        if tids and tids[-1] != pid:
            counts["child_other_threads"] += n
            if body and not WAITING.match(body[-1]):
                side_threads[_frame_name(body[-1])] += n
            continue
        counts["child_main_threads"] += n
        start = next((i for i, f in enumerate(body) if TASK_FRAME.match(f)), None)
        if start is None:
            continue
        counts["in_task"] += n
        names = [_frame_name(f) for f in body[start + 1 :]]
        for name in set(names):
            inclusive[name] += n
            if _parse(name)[1].startswith(PROJECT):
                project[name] += n
        if names:
            leaf[names[-1]] += n
            if WAITING.match(names[-1]):
                counts["in_task_waiting"] += n
        categories[_category(body)] += n

    def share(n: int, of: str) -> float:
        return round(n / counts[of], 4) if counts[of] else 0.0

    def rows(counter: Counter[str], limit: int | None = None, of: str = "in_task") -> list[dict[str, Any]]:
        return [{"name": k, "share": share(v, of), "samples": v} for k, v in counter.most_common(limit)]

    return {
        "samples": counts["all"],
        "rate_hz": RATE,
        "main_process_share": share(counts["main_process"], "all"),
        "children_main_threads_in_task": share(counts["in_task"], "child_main_threads"),
        "children_other_threads_share": share(counts["child_other_threads"], "all"),
        "in_task_waiting_share": share(counts["in_task_waiting"], "in_task"),
        "by_category_self": rows(categories),
        "project_inclusive": rows(project, top),
        "top_inclusive": rows(inclusive, top),
        "top_self": rows(leaf, top),
        "other_threads_top_self_incl_waits": rows(side_threads, 10, of="child_other_threads"),
        "note": "wall-clock samples (py-spy --idle --threads); shares are of the samples taken while a pool "
        "process's main thread was inside a task, unless named otherwise; waiting on PostgreSQL or Redis "
        "counts, as it delays the node run",
    }


def analyse_cpu(path: Path, top: int = 20) -> dict[str, Any]:
    """A CPU-only profile (no --idle) of one process, e.g. daphne: top functions inclusive and self."""
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        body = [f for f in stack.split(";") if not f.startswith(("process ", "thread ("))]
        total += n
        names = [_frame_name(f) for f in body]
        for name in set(names):
            inclusive[name] += n
            if _parse(name)[1].startswith(PROJECT):
                project[name] += n
        if names:
            leaf[names[-1]] += n
        categories[_category(body)] += n

    def rows(counter: Counter[str], limit: int | None = None) -> list[dict[str, Any]]:
        return [
            {"name": k, "share": round(v / total, 4), "samples": v} for k, v in counter.most_common(limit)
        ]

    return {
        "cpu_samples": total,
        "rate_hz": RATE,
        "by_category_self": rows(categories),
        "project_inclusive": rows(project, top),
        "top_inclusive": rows(inclusive, top),
        "top_self": rows(leaf, top),
        "note": "GIL-holding samples only (--gil): shares of the process's Python CPU time",
    }


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        file = _parse(frame)[1]
        for marker, name in CATEGORIES:
            if file.startswith(marker):
                return name
    return "other (interpreter, stdlib)"


class ActivitySampler:
    """Samples pg_stat_activity of the benchmark database in a thread: what its busy backends are doing
    (running or waiting for a CPU, for a lock, for I/O, or idle in a transaction awaiting the client)."""

    QUERY = (
        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pg-activity", daemon=True)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import psycopg
        from django.conf import settings

        db = settings.DATABASES["default"]
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None,
            dbname=db["NAME"], autocommit=True,
        ) as conn:  # fmt: skip
            while not self._stop.wait(self.interval):
                self.polls += 1
                for state, wait_type, wait_event in conn.execute(self.QUERY).fetchall():
                    if state == "idle":
                        continue
                    if state == "active":
                        key = (
                            f"active: {wait_type}:{wait_event}" if wait_type else "active: on CPU or runnable"
                        )
                    else:
                        key = f"{state} (waiting for the client)" if wait_type == "Client" else f"{state}"
                    self.counts[key] += 1

    def summary(self) -> dict[str, Any]:
        busy = sum(self.counts.values())
        return {
            "polls": self.polls,
            "busy_backends_mean": round(busy / self.polls, 3) if self.polls else 0.0,
            "states": [
                {"state": k, "share": round(v / busy, 4) if busy else 0.0, "samples": v}
                for k, v in self.counts.most_common()
            ],
            "note": "samples of non-idle backends of the benchmark database, every 20 ms",
        }
