"""daphne for the benchmark, with the garbage collector's pauses recorded (FLOWRUNNER_BENCH_GC_LOG=path)."""

from __future__ import annotations

import gc
import os
import runpy
import sys
import time
from typing import Any

# Shorter pauses are the young generations' usual cost and would only fill the file.
GC_LOG_FROM_MS = 5.0


def _probe(path: str) -> Any:
    log = open(path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    started = [0.0]

    def probe(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        if ms >= GC_LOG_FROM_MS:
            log.write(f"{time.time():.3f} {info['generation']} {ms:.1f} {info['collected']}\n")

    return probe


if __name__ == "__main__":
    if os.environ.get("FLOWRUNNER_BENCH_GC_LOG"):
        gc.callbacks.append(_probe(os.environ["FLOWRUNNER_BENCH_GC_LOG"]))
    sys.argv[0] = "daphne"
    runpy.run_module("daphne", run_name="__main__", alter_sys=True)
