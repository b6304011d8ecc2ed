"""The embedded PostgreSQL (flowrunner/pgserver.py): start, stop, restart with data kept, recovery after kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from flowrunner import pgserver
from tests.cli.conftest import cli_env


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        tmp_path.chmod(0o711)  # the server runs as its own user, which must enter the directory
    return tmp_path / "postgres"


def _connect(server: pgserver.EmbeddedPostgres) -> psycopg.Connection:
    return psycopg.connect(
        host=str(server.socket_dir), port=pgserver.PORT, user=pgserver.SUPERUSER, dbname=server.database
    )


def _write(server: pgserver.EmbeddedPostgres, value: str) -> None:
    with _connect(server) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (value text)")
        conn.execute("INSERT INTO kept VALUES (%s)", [value])


def _read(server: pgserver.EmbeddedPostgres) -> list[str]:
    with _connect(server) as conn:
        return [row[0] for row in conn.execute("SELECT value FROM kept ORDER BY value")]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while alive := [pid for pid in pids if _running(pid)]:
        assert time.monotonic() < deadline, f"still running: {alive}"
        time.sleep(0.05)


OWNER = """
import sys, time
from pathlib import Path
from flowrunner import pgserver
if sys.argv[2] == "orphan":
    pgserver.die_with_parent = lambda sig: None  # as on a system without a parent-death signal
server = pgserver.EmbeddedPostgres(Path(sys.argv[1])).start()
print(server.process.pid, flush=True)
time.sleep(600)
"""


def _owner(pgdata: Path, mode: str) -> tuple[subprocess.Popen, int]:
    """Another process that starts the server on `pgdata`; returns it and its postmaster's pid."""
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), str(pgdata), mode],
        env=cli_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    line = owner.stdout.readline()
    assert line.strip().isdigit(), f"the owner did not start its server: {line!r}"
    return owner, int(line)


def test_pgserver_keeps_data_across_stop_and_start(pgdata):
    # Given a server that stored a row
    with pgserver.EmbeddedPostgres(pgdata) as server:
        _write(server, "before restart")
        postmaster = server.process.pid
        assert psutil.Process(postmaster).uids().real != 0  # PostgreSQL never runs as root
    # When it is stopped
    # Then no process of it is left, and the next start finds the row
    _wait_gone([postmaster])
    assert pgserver.server_processes(pgdata) == []
    assert not (pgdata / "postmaster.pid").exists()
    with pgserver.EmbeddedPostgres(pgdata) as server:
        _write(server, "after restart")
        assert _read(server) == ["after restart", "before restart"]
    assert pgserver.server_processes(pgdata) == []


def test_pgserver_refuses_a_second_owner_and_lets_a_client_attach(pgdata):
    # Given a running server
    with pgserver.EmbeddedPostgres(pgdata) as owner:
        # When another user of the directory tries to own it, it is refused with the owner's pid
        with pytest.raises(pgserver.InUse, match=f"pid {os.getpid()}"):
            pgserver.EmbeddedPostgres(pgdata).start()
        # And a client that attaches uses the same server, and leaves it running when done
        with pgserver.running(pgdata, attach=True) as attached:
            assert not attached.owned
            _write(attached, "through the attached client")
        assert owner.process.poll() is None
        assert _read(owner) == ["through the attached client"]


def test_pgserver_recovers_the_server_of_a_killed_owner(pgdata):
    # Given a server whose owning process is SIGKILLed
    owner, postmaster = _owner(pgdata, "child")
    owner.kill()
    owner.wait()
    # When the directory is used again
    with pgserver.EmbeddedPostgres(pgdata) as server:
        # Then the new server runs and the old one is gone
        _write(server, "after the owner died")
        assert server.process.pid != postmaster
        _wait_gone([postmaster], timeout=1)
        assert _read(server) == ["after the owner died"]


def test_pgserver_stops_a_postmaster_its_dead_owner_left_running(pgdata):
    # Given a postmaster still running after its owner was SIGKILLed (no parent-death signal reached it)
    owner, postmaster = _owner(pgdata, "orphan")
    owner.kill()
    owner.wait()
    assert _running(postmaster)
    # When the directory is used again
    with pgserver.EmbeddedPostgres(pgdata) as server:
        # Then the stale postmaster was stopped and a new one serves the directory
        _wait_gone([postmaster], timeout=1)
        assert server.process.pid != postmaster
        _write(server, "served by the new postmaster")
        assert {p.pid for p in pgserver.server_processes(pgdata)} >= {server.process.pid}
    assert pgserver.server_processes(pgdata) == []


def test_pgserver_recovers_a_killed_server_with_its_committed_data(pgdata):
    # Given a server that committed a row and was then SIGKILLed, with a client still connected
    first = pgserver.EmbeddedPostgres(pgdata).start()
    _write(first, "committed")
    client = _connect(first)
    client.execute("SELECT 1")
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    first.stop()
    # When it is started again
    try:
        with pgserver.EmbeddedPostgres(pgdata) as second:
            # Then crash recovery kept the row, and the new server works
            assert _read(second) == ["committed"]
            _write(second, "after the crash")
    finally:
        client.close()
    assert pgserver.server_processes(pgdata) == []


def test_pgserver_puts_the_socket_of_a_deep_directory_in_a_short_one(tmp_path):
    # Given a data directory whose socket path would be too long for a Unix socket
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    if os.geteuid() == 0:
        for directory in (tmp_path, deep.parent, deep):
            directory.chmod(0o711)
    pgdata = deep / "postgres"
    assert len(str(pgdata / pgserver.SOCKET_NAME)) > pgserver.MAX_SOCKET_PATH
    # When the server runs
    with pgserver.EmbeddedPostgres(pgdata) as server:
        # Then its socket lives in a private directory under /tmp, where the settings' host points too
        assert server.socket_dir == pgserver.socket_directory(pgdata)
        assert server.socket_dir.parent == pgserver.SOCKET_FALLBACK_ROOT
        assert server.socket_dir.stat().st_mode & 0o077 == 0
        _write(server, "through the short socket")
    # And that directory is removed with the server
    assert not server.socket_dir.exists()


def test_pgserver_never_initialises_over_foreign_files(pgdata):
    # Given a directory that holds something other than a cluster
    pgdata.mkdir()
    (pgdata / "notes.txt").write_text("mine")
    # When the server is asked to use it, it refuses and leaves the files alone
    with pytest.raises(pgserver.EmbeddedPostgresError, match="not empty"):
        pgserver.EmbeddedPostgres(pgdata).start()
    assert (pgdata / "notes.txt").read_text() == "mine"
