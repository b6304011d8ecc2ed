"""A PgBouncer of the test's own, in transaction mode on a free port, in front of the test's PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 10.0


def pgbouncer_binary() -> str:
    """The pgbouncer executable, or skip: it is an OS package (`apt-get install -y pgbouncer`)."""
    binary = shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(path, os.X_OK)), None
    )
    if binary is None:
        pytest.skip("pgbouncer is not installed (Debian/Ubuntu: apt-get install -y pgbouncer; .ci/run does)")
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PgBouncer:
    port: int
    process: subprocess.Popen
    log_path: Path
    config_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.config_dir, ignore_errors=True)


def start_pgbouncer(directory: Path, *, db: dict, pool_size: int = 2) -> PgBouncer:
    """Transaction pooling with `pool_size` server connections per database/user: fewer than the clients, so
    consecutive transactions of one client land on different server connections (what breaks session state
    such as prepared statements)."""
    binary = pgbouncer_binary()
    directory.mkdir(parents=True, exist_ok=True)
    # pgbouncer refuses to run as root; as nobody it must reach its files, which pytest's private tmp does not
    # allow: they go to a directory of their own, the log to the test's.
    config_dir = Path(tempfile.mkdtemp(prefix="flowrunner-pgbouncer-"))
    config_dir.chmod(0o755)
    port = _free_port()
    host = str(db["HOST"])
    user = str(db.get("USER") or "postgres")
    password = str(db.get("PASSWORD") or "")
    (config_dir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    server = f"host={host} port={db.get('PORT') or 5432}" + (f" password={password}" if password else "")
    log_path = directory / "pgbouncer.log"
    (config_dir / "pgbouncer.ini").write_text(
        f"""[databases]
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {config_dir / "userlist.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
"""
    )
    for name in ("pgbouncer.ini", "userlist.txt"):
        (config_dir / name).chmod(0o644)
    command = [binary, str(config_dir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    bouncer = PgBouncer(port=port, process=process, log_path=log_path, config_dir=config_dir)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return bouncer
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                bouncer.stop()
                raise RuntimeError(f"pgbouncer did not start on port {port}:\n{bouncer.log()}")
            time.sleep(0.05)
