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
