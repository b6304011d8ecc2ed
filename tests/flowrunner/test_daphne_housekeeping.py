"""daphne's connection housekeeping, patched: only connections that changed are looked at, with daphne's rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Run in a child process: importing daphne.server installs Twisted's asyncio reactor for the whole process.
SCENARIO = r"""
import asyncio, json, sys
import daphne.server as daphne_server
from flowrunner import daphne_housekeeping as housekeeping

installed = housekeeping.install() and housekeeping.install()
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)

async def app(scope, receive, send):
    if scope["kind"] == "fail":
        raise ValueError("boom")
    if scope["kind"] == "run":
        await asyncio.Event().wait()

class Protocol:
    def __init__(self, name):
        self.name, self.errors = name, []
    def handle_exception(self, exc):
        self.errors.append(repr(exc))
        if self.name == "broken":
            raise ValueError("HTTP response has already been started")
    def __repr__(self):
        return self.name

server = daphne_server.Server(application=app, endpoints=["tcp:port=0:interface=127.0.0.1"], signal_handlers=False)
server.connections = {}  # what Server.run() starts with (the test drives the server without its reactor)
def connect(name, kind):
    protocol = Protocol(name)
    server.protocol_connected(protocol)
    server.create_application(protocol, {"type": "websocket", "kind": kind})
    return protocol

idle = [connect(f"idle{n}", "run") for n in range(1000)]
finished, failed, broken = connect("finished", "finish"), connect("failed", "fail"), connect("broken", "fail")
leaving, left = connect("leaving", "run"), connect("left", "finish")
loop.run_until_complete(asyncio.sleep(0.05))
server.protocol_disconnected(leaving)
server.protocol_disconnected(left)
due_before = sorted(map(repr, housekeeping.due(server)))

housekeeping.check_due(server)
after_first = {
    "due": sorted(map(repr, housekeeping.due(server))),
    "finished": server.connections.get(finished),
    "failed_errors": failed.errors,
    "broken_reaped": "application_instance" not in server.connections[broken],
    "left_gone": left not in server.connections,
    "leaving_running": not server.connections[leaving]["application_instance"].done(),
    "idle_running": sum(not server.connections[p]["application_instance"].done() for p in idle),
}
server.application_close_timeout = -1
housekeeping.check_due(server)
loop.run_until_complete(asyncio.sleep(0.05))
housekeeping.check_due(server)
print(json.dumps({
    "installed": installed,
    "checker_patched": daphne_server.Server.application_checker.__module__,
    "due_before": due_before,
    "after_first": {k: (v if not isinstance(v, dict) else sorted(v)) for k, v in after_first.items()},
    "leaving_gone_after_timeout": leaving not in server.connections,
    "due_at_end": sorted(map(repr, housekeeping.due(server))),
    "connections_at_end": len(server.connections),
}))
"""


def _run_scenario() -> dict:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_daphne_housekeeping_looks_only_at_connections_that_changed():
    # given a real daphne Server, patched, with 1,000 idle connections whose applications run, and five that
    # changed: an application that finished, two that raised (one whose protocol fails to report it), a client
    # gone while its application runs, and a client gone after its application finished
    # when the housekeeping passes run
    result = _run_scenario()
    # then it was installed once, in place of daphne's scan
    assert result["installed"] is True
    assert result["checker_patched"] == "flowrunner.daphne_housekeeping"
    # and only the four that changed were due, none of the idle ones
    assert result["due_before"] == ["broken", "failed", "finished", "leaving", "left"]
    first = result["after_first"]
    # and daphne's rules applied to them: a finished application is reaped (its connection stays while the
    # client is there), a raising one reported to its protocol, a gone client's connection dropped
    assert first["finished"] == ["connected"]
    assert first["failed_errors"] == ["ValueError('boom')"]
    # and a protocol that failed to report its exception is reaped all the same
    assert first["broken_reaped"] is True
    assert first["left_gone"] is True
    # and a client gone while its application still runs stays due until its close timeout cancels it
    assert first["leaving_running"] is True and first["due"] == ["leaving"]
    assert result["leaving_gone_after_timeout"] is True and result["due_at_end"] == []
    # and the idle connections were left alone
    assert first["idle_running"] == 1000
    assert result["connections_at_end"] == 1003


def test_daphne_housekeeping_is_not_installed_without_daphne():
    # given a process where daphne's server module is not loaded (another ASGI server, a worker)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from flowrunner import daphne_housekeeping as h; "
            "print(h.install(), 'daphne.server' in sys.modules, 'twisted.internet.reactor' in sys.modules)",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # when the housekeeping is asked to install / then it declines, and loads neither daphne nor a reactor
    assert done.stdout.split() == ["False", "False", "False"]


TIMEOUTS_SCENARIO = r"""
import json
import daphne.server as daphne_server
from flowrunner import daphne_housekeeping as housekeeping

housekeeping.install()

class Protocol:
    def __init__(self, name, fails=False):
        self.name, self.fails, self.checks = name, fails, 0
    def check_timeouts(self):
        self.checks += 1
        if self.fails:
            raise RuntimeError("check failed")
    def __repr__(self):
        return self.name

server = daphne_server.Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"], signal_handlers=False)
server.connections = {}
protocols = [Protocol(f"c{n}", fails=(n == 7)) for n in range(1000)]
for protocol in protocols:
    server.connections[protocol] = {"connected": 0}
slices = []
for tick in range(housekeeping.TIMEOUT_SLICES):
    before = sum(p.checks for p in protocols)
    if tick == 5:  # one leaves and one arrives in the middle of the round
        gone = protocols[999]
        del server.connections[gone]
        late = Protocol("late")
        server.connections[late] = {"connected": 0}
    housekeeping.check_timeouts_slice(server)
    slices.append(sum(p.checks for p in protocols) - before)
first_round = {"checks": sorted({p.checks for p in protocols[:999]}), "gone": gone.checks, "late": late.checks}
for tick in range(housekeeping.TIMEOUT_SLICES):
    housekeeping.check_timeouts_slice(server)
print(json.dumps({
    "patched": daphne_server.Server.timeout_checker.__module__,
    "slices": slices,
    "first_round": first_round,
    "second_round": {"checks": sorted({p.checks for p in protocols[:999]}), "gone": gone.checks, "late": late.checks},
}))
"""


def test_daphne_housekeeping_checks_timeouts_a_slice_at_a_time():
    # given a real daphne Server, patched, with 1,000 connections (one whose check raises)
    # when the timeout checker ticks through two rounds, a connection leaving and one arriving mid-round
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", TIMEOUTS_SCENARIO],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # then daphne's walk is replaced, and no tick checks more than a slice (1,000 / 20)
    assert result["patched"] == "flowrunner.daphne_housekeeping"
    assert max(result["slices"]) <= 50
    # and each connection present was checked once per round, the failing one included and not stopping
    # the others; the one that left was not checked after leaving, the late one from the next round on
    assert result["first_round"] == {"checks": [1], "gone": 0, "late": 0}
    assert result["second_round"] == {"checks": [2], "gone": 0, "late": 1}
    # and the failure was logged
    assert "Timeout check of connection c7 failed" in done.stderr
