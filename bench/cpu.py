"""CPU seconds used by each part of the stack over a window, read from /proc (Linux only; empty elsewhere)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def postgres_backends(database: str) -> list[int]:
    """Backends connected to `database` (their process title names it)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (title := _cmdline(int(entry.name))).startswith("postgres:"):
            if f" {database} " in title:
                out.append(int(entry.name))
    return out


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (every process, ours or not)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


class CpuWindow:
    """`groups` maps a name to a function returning the pids to count now; pids are re-read at the end so
    processes that appeared meanwhile (new backends) count too (from zero)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.start: dict[str, dict[int, float]] = {}
        self.machine_start = 0.0

    def __enter__(self) -> CpuWindow:
        self.start = {name: self._read(pids()) for name, pids in self.groups.items()}
        self.machine_start = machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = {name: self._read(pids()) for name, pids in self.groups.items()}
        self.machine_end = machine_busy()

    @staticmethod
    def _read(pids: list[int]) -> dict[int, float]:
        return {pid: value for pid in pids if (value := _cpu_seconds(pid)) is not None}

    def seconds(self) -> dict[str, float]:
        out = {}
        for name, end in self.end.items():
            start = self.start.get(name, {})
            out[name] = round(sum(v - start.get(pid, 0.0) for pid, v in end.items()), 3)
        out["machine_all_processes"] = round(self.machine_end - self.machine_start, 3)
        return out


def stack_groups(stack, database: str) -> dict[str, Callable[[], list[int]]]:  # noqa: ANN001
    """The benchmark's own processes: worker (main + pool), the pool's script sandbox hosts, daphne, the
    database's backends, the driver."""

    def worker() -> list[int]:
        main, children = stack.worker_pids()
        return [main, *children]

    def sandbox_hosts() -> list[int]:
        # each pool process starts its own host (a child of its own): the scripts' V8 runs there
        _, children = stack.worker_pids()
        return [host for child in children for host in _children(child)]

    def web() -> list[int]:
        return [stack.children["web"].pid]

    return {
        "worker": worker,
        "sandbox_hosts": sandbox_hosts,
        "daphne": web,
        "postgres_backends": lambda: postgres_backends(database),
        "driver": lambda: [os.getpid()],
    }
