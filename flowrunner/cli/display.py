"""How `flowrunner run` shows an execution on stderr: a rich progress bar and node lines, or JSON frames."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

STATUS_STYLES = {
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "retrying": "yellow",
    "timed_out": "magenta",
    "canceled": "bright_black",
}
LOG_STYLES = {"debug": "bright_black", "info": "default", "warning": "yellow", "error": "red"}


def _clock(timestamp: str | None) -> str:
    try:
        return datetime.fromisoformat(timestamp or "").strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return " " * 12


def _node_label(node: dict[str, Any]) -> str:
    batch = node.get("batch_index")
    return f"{node.get('node_id')}" + (f"[{batch}]" if batch is not None else "")


class EventDisplay:
    """Fed every stored event frame in seq order (the frames the WebSocket sends)."""

    def __init__(
        self,
        *,
        flow_name: str,
        json_events: bool = False,
        redact: Callable[[Any], Any] = lambda value: value,
        verbose: bool = False,
    ) -> None:
        self.json_events = json_events
        self.redact = redact
        self.verbose = verbose
        self.console = Console(stderr=True, highlight=False)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[node]}"),
            TimeElapsedColumn(),
            console=self.console,
            # A terminal gets a live bar; a pipe or file gets the node lines only (no redraw noise).
            disable=json_events or not self.console.is_terminal,
        )
        self.task = self.progress.add_task(escape(flow_name), total=100, node="")
        self.node_runs = 0

    def __enter__(self) -> EventDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def frame(self, frame: dict[str, Any]) -> None:
        frame = self.redact(frame)
        if self.json_events:
            sys.stderr.write(json.dumps(frame, ensure_ascii=False, default=str) + "\n")
            sys.stderr.flush()
            return
        kind = frame.get("type")
        if kind == "status":
            status = frame.get("status") or {}
            self.progress.update(
                self.task,
                completed=float(status.get("progress") or 0),
                node=escape(status.get("current_node") or ""),
            )
        elif kind == "node":
            self._node(frame)
        elif kind == "log":
            self._log(frame)

    def _node(self, frame: dict[str, Any]) -> None:
        node = frame.get("node") or {}
        status = node.get("status") or ""
        if status == "queued" and not self.verbose:
            return  # every node is queued before it runs; the running line says the same, later
        if status == "running":
            self.node_runs += 1
        style = STATUS_STYLES.get(status, "default")
        parts = [
            f"[bright_black]{_clock(frame.get('timestamp'))}[/]",
            f"{escape(_node_label(node)):<28}",
            f"[{style}]{status:<9}[/]",
            f"attempt {node.get('attempt', 1)}",
        ]
        if node.get("action") and status != "running":
            parts.append(f"→ {escape(str(node['action']))}")
        if node.get("error"):
            parts.append(f"[{style}]{escape(str(node['error']))}[/]")
        self.console.print("  ".join(parts), soft_wrap=True)

    def _log(self, frame: dict[str, Any]) -> None:
        log = frame.get("log") or {}
        level = str(log.get("level") or "info")
        style = LOG_STYLES.get(level, "default")
        where = escape(str(log.get("node_id") or frame.get("node_id") or ""))
        message = escape(str(log.get("message") or ""))
        self.console.print(
            f"[bright_black]{_clock(frame.get('timestamp'))}[/]  {where:<28}  [{style}]{level:<9}[/]  {message}",
            soft_wrap=True,
        )

    def note(self, message: str) -> None:
        if not self.json_events:
            self.console.print(f"[yellow]{escape(message)}[/]")

    def summary(self, execution: Any) -> None:
        """One closing line on stderr; with --json-events the terminal `status` frame already said it all."""
        if self.json_events:
            return
        seconds = (
            (execution.finished_at - execution.started_at).total_seconds()
            if execution.finished_at and execution.started_at
            else 0.0
        )
        style = "green" if execution.status == "completed" else "red"
        line = f"[{style}]{execution.status}[/] in {seconds:.2f}s ({self.node_runs} node runs)"
        if execution.error:
            line += f": {escape(str(self.redact(execution.error)))}"
        self.console.print(line, soft_wrap=True)


def problem_lines(path: str, problems: list[Any]) -> list[str]:
    """`FILE:LINE:COL: path: message` per problem: the API's `error.details`, compiler style."""
    lines = []
    for problem in problems:
        where = f"{path}:{problem.line}:{problem.column}" if problem.line else path
        lines.append(f"{where}: {problem.path + ': ' if problem.path else ''}{problem.message}")
    return lines
