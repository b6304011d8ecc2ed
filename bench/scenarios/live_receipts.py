"""Scenario d's tallies: each live frame's latency to its arrival at the client and to the driver's read."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from typing import Any

LIVE_TYPES = ("status", "node", "log")


def sent_at(frame: dict[str, Any]) -> float:
    return datetime.fromisoformat(frame["timestamp"]).timestamp()


class Receipts:
    """Latencies (ms) of every live frame — to its arrival at the client's socket (the kernel's receive time)
    and to the driver's reading it — frames per subscriber, frame sizes, each subscriber's span, and
    (FlowRunner) the subscribers still without `complete` once their execution had ended."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.read_latencies: list[float] = []
        self.frames: list[int] = []
        self.sizes: list[int] = []
        self.spans: list[float] = []
        self.lost: list[dict[str, Any]] = []
        self.subscribers = 0
        self.handshakes_retried = 0
        self.unstamped = 0  # reads the kernel gave no arrival time for (timed when read instead)

    def shape(self) -> tuple[int, float, int]:
        """(frames per subscriber, seconds between frames, payload filler) for the baseline to mimic."""
        count = max(1, round(median(self.frames))) if self.frames else 1
        gap = min(0.005, median(self.spans) / count) if self.spans else 0.0
        filler = max(0, round(median(self.sizes)) - 120) if self.sizes else 0
        return count, gap, filler

    def add(self, other: Receipts) -> None:
        self.latencies += other.latencies
        self.read_latencies += other.read_latencies
        self.frames += other.frames
        self.sizes += other.sizes
        self.spans += other.spans
        self.lost += other.lost
        self.subscribers += other.subscribers
        self.handshakes_retried += other.handshakes_retried
        self.unstamped += other.unstamped


@dataclass
class Subscriber:
    execution_id: str
    snapshot_seq: int = 0
    last_seq: int = 0
    frames: int = 0
    first: float = 0.0
    last: float = 0.0
    complete: bool = False
    tail: list[tuple[int, str]] = field(default_factory=list)
    # (text, arrival, read) of each message after the snapshot, decoded once the round is over: the
    # receiving side does no more than it must while frames are arriving.
    received: list[tuple[str, float, float]] = field(default_factory=list)

    def tally(self, out: Receipts) -> None:
        """Counts the live frames received after the snapshot and before `complete`."""
        for raw, arrival, now in self.received:
            frame = json.loads(raw)
            if frame["type"] == "complete":
                break
            if frame["type"] in LIVE_TYPES and frame["seq"] > self.snapshot_seq:
                sent = sent_at(frame)
                out.latencies.append((arrival - sent) * 1000)
                out.read_latencies.append((now - sent) * 1000)
                out.sizes.append(len(raw))
                self.frames += 1
                self.last_seq = max(self.last_seq, frame["seq"])
                self.tail = [*self.tail[-4:], (frame["seq"], frame["type"])]
                self.first = self.first or now
                self.last = now
        self.received = []


def quiet_collector() -> None:
    """Before a measured window: the driver's objects so far (its sockets, their buffers) leave the collector's
    generations, so that a full collection scanning thousands of sockets' objects (measured up to 270 ms in the
    driver) is not counted as frame latency on either side. `gc.unfreeze()` after the window."""
    gc.collect()
    gc.freeze()
