"""Scenario d's load shapes: thousands of idle subscribed sockets on one daphne, and clients that stop reading."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench import profiling
from bench.driver import Bench, start_run, wait_executions
from bench.stats import scenario_result, summary

# 2,000 sockets on 200 executions and 10,000 idle sockets at the default 200 subscribers.
DENSE_PER_EXECUTION = 10
IDLE_PER_SUBSCRIBER = 50
# Handshakes in flight while the idle sockets connect: daphne refuses (403) one not accepted within 5 s.
CONNECT_PARALLEL = 20
PINGS = 200
PING_GAP = 0.02
STALLED_CLIENTS = 20
TIMEOUT = 600.0
# Each node logs ~0.96 MB (120 lines of 8,000 characters): more than a socket's kernel buffers hold.
CHATTY_NODES = ("a", "b", "c", "d")
_CHATTY_SCRIPT = "for (let i = 0; i < 120; i++) console.log(i + ':' + 'x'.repeat(8000)); return {}"
CHATTY_FLOW = "metadata: {name: bench-chatty}\nnodes:\n" + "".join(
    f'  {n}: {{type: transform, params: {{script: "{_CHATTY_SCRIPT}"}}'
    + (f", next: {{success: {CHATTY_NODES[i + 1]}}}}}\n" if i + 1 < len(CHATTY_NODES) else "}\n")
    for i, n in enumerate(CHATTY_NODES)
)


async def start_all(http: Any, flow_id: str, count: int, parallel: int = 8) -> list[str]:
    """`count` runs, `parallel` requests in flight (under the web process's database pool of 10), a request
    answered 503 (no pooled connection within the pool's timeout while the machine is loaded) tried again."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> str:
        for attempt in range(5):
            async with gate:
                try:
                    return await start_run(http, flow_id)
                except RuntimeError as error:
                    if " 503" not in str(error) or attempt == 4:
                        raise
            await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _profile_summary(path: Path | None, log: str) -> dict[str, Any] | None:
    if path is None:
        return None
    summary: dict[str, Any] = {"raw_file": str(path), "py_spy": log[-400:]}
    if path.exists():
        summary.update(profiling.analyse_cpu(path))
    return summary


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _bearer(bench: Bench) -> dict[str, str]:
    """A bearer token's header: Basic would cost a password hash per handshake whenever its cache misses."""
    async with httpx.AsyncClient(base_url=bench.stack.api_url, timeout=60.0) as http:
        response = await http.post(
            "/login", json={"username": bench.creds.username, "password": bench.creds.password}
        )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _ws(bench: Bench, headers: dict[str, str]) -> Any:
    return connect(bench.stack.ws_url, additional_headers=headers, open_timeout=60, ping_interval=None)


async def _pings(bench: Bench, count: int, headers: dict[str, str]) -> list[float]:
    """Round trips (ms) of `ping` → `pong` on a socket of its own, one at a time."""
    times: list[float] = []
    async with _ws(bench, headers) as ws:
        for _ in range(count):
            started = time.perf_counter()
            await ws.send('{"type": "ping"}')
            while json.loads(await ws.recv())["type"] != "pong":
                pass
            times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(PING_GAP)
    return times


async def _open_subscribed(
    bench: Bench, execution_id: str, gate: asyncio.Semaphore, headers: dict[str, str]
) -> Any:
    async with gate:
        ws = await _ws(bench, headers)
        await ws.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
        snapshot = json.loads(await ws.recv())
        if snapshot["type"] != "status":
            raise RuntimeError(f"subscribe answered {snapshot}")
        return ws


async def idle_sockets(
    bench: Bench, flow_id: str, count: int, profile_path: Path | None = None
) -> dict[str, Any]:
    """`count` sockets subscribed to queued executions (the worker paused: nothing moves), then pings; with
    `profile_path`, daphne's CPU profile during those pings (py-spy --gil) goes there."""
    pid = bench.stack.children["web"].pid
    executions = max(1, count // IDLE_PER_SUBSCRIBER)
    await asyncio.to_thread(bench.stack.pause)
    sockets: list[Any] = []
    try:
        async with bench.http() as http:
            ids = await start_all(http, flow_id, executions)
        headers = await _bearer(bench)
        quiet = await _pings(bench, PINGS, headers)
        rss_before = _rss_mib(pid)
        gate = asyncio.Semaphore(CONNECT_PARALLEL)
        started = time.monotonic()
        opening = [
            asyncio.create_task(_open_subscribed(bench, ids[i % len(ids)], gate, headers))
            for i in range(count)
        ]
        # Sockets still opening after TIMEOUT (a loaded machine) are given up and counted, not the whole shape.
        _, late = await asyncio.wait(opening, timeout=TIMEOUT)
        for task in late:
            task.cancel()
        opened = await asyncio.gather(*opening, return_exceptions=True)
        sockets = [ws for ws in opened if not isinstance(ws, BaseException)]
        refused = [repr(error)[:200] for error in opened if isinstance(error, BaseException)]
        connect_s = time.monotonic() - started
        # Long enough for every socket's first PostgreSQL catch-up of its quiet execution (2 s, then 4 s).
        await asyncio.sleep(5.0)
        spy = profiling.start(pid, profile_path, wall_clock=False) if profile_path is not None else None
        pinging = time.time()
        try:
            loaded = await _pings(bench, PINGS, headers)
        finally:
            pinged = time.time()
            spy_log = profiling.stop(spy) if spy is not None else ""
        rss_after = _rss_mib(pid)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.to_thread(bench.stack.resume)
    await wait_executions(ids, TIMEOUT)
    fr, base = summary(loaded, "ms"), summary(quiet, "ms")
    return scenario_result(
        "d_live_idle",
        f"{count} idle subscribed WebSockets on one daphne: ping round trip",
        fr,
        base,
        ratio=fr["p99"] / base["p99"] if base["p99"] else float("nan"),
        target="ping p99 ≤ 50 ms while connected, daphne RSS ≤ 1 GiB",
        met=fr["p99"] <= 50.0 and rss_after <= 1024 and len(sockets) == count,
        details={
            "ratio_of": "p99",
            "sockets": len(sockets),
            "sockets_refused": len(refused),
            "sockets_not_open_within_s": [len(late), TIMEOUT],
            "first_refusals": refused[:3],
            "executions": executions,
            "connect_seconds": round(connect_s, 1),
            "daphne_rss_mib_before": round(rss_before, 1),
            "daphne_rss_mib_after": round(rss_after, 1),
            "daphne_kib_per_socket": round((rss_after - rss_before) * 1024 / max(1, len(sockets)), 1),
            "subscribers_without_complete": 0,
            "gc_pauses_while_pinging": bench.stack.gc_pauses(pinging, pinged),
            "web_profile_while_pinging": _profile_summary(profile_path, spy_log),
            "baseline_measures": "the same pings on the same daphne before the idle sockets connected",
        },
    )


async def _stalled_socket(bench: Bench) -> Any:
    """A client that takes almost nothing off its socket: a tiny receive buffer and a queue of one frame."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (bench.stack.host, bench.stack.port))
    return await connect(
        bench.stack.ws_url,
        sock=sock,
        additional_headers=bench.creds.headers,
        max_queue=1,
        max_size=None,
        ping_interval=None,
    )


async def _read_to_complete(ws: Any) -> tuple[list[int], int]:
    seqs, size = [], 0
    async with asyncio.timeout(TIMEOUT):
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "complete":
                break
            seqs.append(frame["seq"])
            size += len(raw)
    return seqs, size


async def _chatty_round(bench: Bench, flow_id: str, stall: bool) -> tuple[list[float], int, list[bool]]:
    """STALLED_CLIENTS sockets (stopping to read after their snapshot when `stall`) and one reader on one
    chatty execution; daphne's RSS growth sampled every 100 ms until the reader has `complete`. Then the
    stalled ones read → (RSS growth samples in MiB, bytes the reader got, whether each socket got every frame)."""
    pid = bench.stack.children["web"].pid
    await asyncio.to_thread(bench.stack.pause)
    clients: list[Any] = []
    try:
        async with bench.http() as http:
            (execution_id,) = await start_all(http, flow_id, 1)
        clients = [await (_stalled_socket(bench) if stall else bench.ws()) for _ in range(STALLED_CLIENTS)]
        snapshots = []
        for ws in clients:
            await ws.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
            snapshots.append(json.loads(await ws.recv())["seq"])
        readers = [] if stall else [asyncio.create_task(_read_to_complete(ws)) for ws in clients]
        rss_before = _rss_mib(pid)
        samples: list[float] = []
        async with bench.ws() as reader:
            await reader.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
            await reader.recv()
            reading = asyncio.create_task(_read_to_complete(reader))
            await asyncio.to_thread(bench.stack.resume)
            while not reading.done():
                samples.append(_rss_mib(pid) - rss_before)
                await asyncio.sleep(0.1)
            _, size = reading.result()
        await asyncio.sleep(1.0)
        samples.append(_rss_mib(pid) - rss_before)
        await wait_executions([execution_id], TIMEOUT)
        if stall:
            readers = [asyncio.create_task(_read_to_complete(ws)) for ws in clients]
        results = await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await asyncio.to_thread(bench.stack.resume)
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    last = await asyncio.to_thread(_last_seq, execution_id)
    complete = [
        isinstance(r, tuple) and r[0] == list(range(s + 1, last + 1))
        for r, s in zip(results, snapshots, strict=True)
    ]
    return samples, size, complete


async def stalled_readers(bench: Bench, flow_id: str) -> dict[str, Any]:
    """The same chatty execution watched by STALLED_CLIENTS sockets that read (baseline, after a warm-up
    round) and by as many that stop reading: daphne's memory must not grow with what the stalled are owed."""
    await _chatty_round(bench, flow_id, stall=False)
    reading, _, reading_ok = await _chatty_round(bench, flow_id, stall=False)
    stalled, size, stalled_ok = await _chatty_round(bench, flow_id, stall=True)
    owed_mib = STALLED_CLIENTS * size / 2**20
    fr, base = summary(stalled, "MiB"), summary(reading, "MiB")
    return scenario_result(
        "d_live_stalled",
        f"{STALLED_CLIENTS} clients stop reading a chatty execution ({owed_mib:.0f} MiB of frames owed)",
        fr,
        base,
        ratio=fr["max"] / base["max"] if base["max"] > 0 else float("nan"),
        target="daphne RSS growth with stalled clients ≤ with reading ones + 16 MiB; each gets every frame",
        met=fr["max"] <= base["max"] + 16 and all(stalled_ok) and all(reading_ok),
        details={
            "ratio_of": "max RSS growth, stalled clients / reading clients",
            "flowrunner_measures": "daphne RSS growth (MiB) while the stalled clients read nothing, every 100 ms",
            "baseline_measures": "the same with every client reading, same execution shape, same daphne",
            "owed_mib": round(owed_mib, 1),
            "stalled_clients_caught_up": sum(stalled_ok),
            "stalled_clients": STALLED_CLIENTS,
            "subscribers_without_complete": STALLED_CLIENTS - sum(stalled_ok),
        },
    )


def _last_seq(execution_id: str) -> int:
    from executions.models import Execution

    return Execution.objects.get(id=execution_id).last_event_seq
