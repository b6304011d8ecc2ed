"""Live frames fanned out by the hub, for real: many subscribers of one execution on two daphne processes, and a
client that stops reading while others watch the same execution."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from executions.models import Execution
from tests.integration.api_steps import create_flow, start_run, wait_for
from tests.integration.harness import LiveStack
from tests.integration.processes import free_port
from tests.integration.ws_watch import Watch, watch_until_complete

BUSY = "const end = Date.now() + {ms}; while (Date.now() < end) {{}}"
# The first node keeps the execution going while every subscriber attaches; the others each move it on.
SHARED_FLOW = (
    "metadata: {name: fanout shared}\nnodes:\n"
    f'  a: {{type: transform, params: {{script: "{BUSY.format(ms=2000)} return {{a: 1}}"}}, next: {{success: b}}}}\n'
    + "".join(
        f"  {n}: {{type: transform, params: {{script: \"console.log('at {n}'); return {{{n}: 1}}\"}}"
        + (f", next: {{success: {m}}}}}\n" if m else "}\n")
        for n, m in (("b", "c"), ("c", "d"), ("d", "e"), ("e", "f"), ("f", None))
    )
)
# Each node logs ~0.96 MB (120 lines of 8,000 characters, under the sandbox's 1 MiB of console output): more
# than a socket's kernel buffers hold, so a client that does not read fills the server's write buffer.
CHATTY_NODES = ("a", "b", "c", "d", "e", "f", "g", "h")
CHATTY_SCRIPT = "for (let i = 0; i < 120; i++) console.log(i + ':' + 'x'.repeat(8000)); return {}"
CHATTY_FLOW = "metadata: {name: fanout chatty}\nnodes:\n" + "".join(
    f'  {n}: {{type: transform, params: {{script: "{BUSY.format(ms=1500) if n == "a" else ""} {CHATTY_SCRIPT}"}}'
    + (f", next: {{success: {CHATTY_NODES[i + 1]}}}}}\n" if i + 1 < len(CHATTY_NODES) else "}\n")
    for i, n in enumerate(CHATTY_NODES)
)
LIVE = ("status", "node", "log")


@pytest.fixture(scope="module")
def second_web(live_stack: LiveStack) -> Iterator[str]:
    """A second daphne process on the same database and Redis → its WebSocket URL."""
    port = free_port()
    child = live_stack._spawn(
        "web2", ["-m", "daphne", "-b", live_stack.host, "-p", str(port), "flowrunner.asgi:application"]
    )
    base = f"http://{live_stack.host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code < 500:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not child.alive():
            raise AssertionError(f"second daphne did not come up:\n{child.tail()}")
        time.sleep(0.2)
    yield f"ws://{live_stack.host}:{port}/api/v1/ws"
    child.stop()
    live_stack.children.pop("web2", None)


def _live_seqs(watch: Watch) -> tuple[int, list[int]]:
    """(the snapshot's seq, the seqs of the frames after it)."""
    snapshot, *rest = [f for f in watch.frames if f["type"] in LIVE]
    return snapshot["seq"], [f["seq"] for f in rest]


def test_websocket_fanout_every_subscriber_on_two_web_processes_gets_every_frame_once_in_order(
    stack, live_api, live_user, live_db, second_web
):
    # given an execution watched by eight sockets on each of two daphne processes
    flow_id = create_flow(live_api, SHARED_FLOW)
    execution_id = start_run(live_api, flow_id, {})
    urls = [stack.ws_url] * 8 + [second_web] * 8

    # when it runs to its end
    async def scenario() -> list[Watch]:
        watches = [Watch(execution_id) for _ in urls]
        await asyncio.gather(
            *(
                watch_until_complete(url, live_user.headers, watch, since=None, timeout=120)
                for url, watch in zip(urls, watches, strict=True)
            )
        )
        return watches

    watches = asyncio.run(scenario())
    final = wait_for(live_api, execution_id)
    last_seq = Execution.objects.get(id=execution_id).last_event_seq

    # then every subscriber, on either process, got each event after its snapshot exactly once, in seq order,
    # live (the snapshots came before the last nodes ran), and one `complete`
    assert final["status"] == "completed"
    for watch in watches:
        snapshot_seq, seqs = _live_seqs(watch)
        assert seqs == list(range(snapshot_seq + 1, last_seq + 1)), (snapshot_seq, seqs)
        assert snapshot_seq < last_seq - 5
        assert [f["type"] for f in watch.frames].count("complete") == 1


async def _stalled_socket(url: str, headers: dict[str, str]) -> tuple[Any, int]:
    """A client that takes almost nothing off its socket unless asked: a tiny receive buffer, a queue of one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.removeprefix("ws://").split("/", 1)[0].split(":")
    sock.connect((host, int(port)))
    ws = await connect(url, sock=sock, additional_headers=headers, max_queue=1, max_size=None)
    return ws, sock.getsockname()[1]


def test_websocket_fanout_a_stalled_reader_holds_up_no_one_and_is_caught_up_when_it_reads(
    stack, live_api, live_user, live_db
):
    # given a client that subscribes to a chatty execution and then stops reading, and two that keep reading
    flow_id = create_flow(live_api, CHATTY_FLOW)
    execution_id = start_run(live_api, flow_id, {})

    async def scenario() -> tuple[list[Watch], int, int, list[dict[str, Any]]]:
        stalled, port = await _stalled_socket(stack.ws_url, live_user.headers)
        await stalled.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
        snapshot = json.loads(await stalled.recv())
        readers = [Watch(execution_id) for _ in range(2)]
        # when the execution runs to its end while the stalled client reads nothing
        await asyncio.gather(
            *(
                watch_until_complete(stack.ws_url, live_user.headers, w, since=None, timeout=180)
                for w in readers
            )
        )
        # and only then the stalled client reads again
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(120):
            async for raw in stalled:
                frame = json.loads(raw)
                frames.append(frame)
                if frame["type"] == "complete":
                    break
        await stalled.close()
        return readers, port, snapshot["seq"], frames

    readers, port, snapshot_seq, frames = asyncio.run(scenario())
    final = wait_for(live_api, execution_id)
    last_seq = Execution.objects.get(id=execution_id).last_event_seq

    # then the readers were not held up: each got every frame once, in order, and `complete`
    assert final["status"] == "completed"
    for watch in readers:
        first, seqs = _live_seqs(watch)
        assert seqs == list(range(first + 1, last_seq + 1))
    # and the server stopped writing to the stalled socket (it did not buffer the whole run for it)
    log = (stack.workdir / "web.log").read_text(errors="replace")
    assert f"{port}] stopped reading" in log
    # and once it read again it got every frame after its snapshot exactly once, in order, then `complete`
    assert [f["seq"] for f in frames if f["type"] in LIVE] == list(range(snapshot_seq + 1, last_seq + 1))
    assert frames[-1]["type"] == "complete" and frames[-1]["message"].endswith("completed")
