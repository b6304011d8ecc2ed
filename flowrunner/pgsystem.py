"""The operating-system side of the embedded PostgreSQL: its own user under root, the lock, its processes."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psutil

# PostgreSQL refuses to run as root: a root process runs the server as this system user (made on first use).
SERVER_USER = "flowrunner-postgres"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up, started or reached (the message says why and what to do)."""


def lock_exclusive(path: Path) -> tuple[int | None, str]:
    """(fd, "") holding an exclusive lock on `path`, which the kernel releases when this process dies however
    it dies; or (None, "pid N") naming the live process that holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return None, f"pid {owner}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, ""


def server_processes(pgdata: Path) -> list:
    """Every PostgreSQL process working in `pgdata` (postmaster and backends all run there)."""
    pgdata = Path(pgdata).resolve()
    found = []
    for process in psutil.process_iter(["name"]):
        if not (process.info["name"] or "").startswith("postgres"):
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if Path(process.cwd()) == pgdata:
                found.append(process)
    return found


def server_account() -> tuple[int, int] | None:
    """(uid, gid) the server runs as when this process is root, creating the system user once; else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        argv += ["--shell", "/usr/sbin/nologin", "--comment", "FlowRunner embedded PostgreSQL", SERVER_USER]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"PostgreSQL cannot run as root and `useradd` failed: {exc}"
            ) from None
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL cannot run as root, and creating the user {SERVER_USER} failed: {done.stderr.strip()}"
            ) from None
    return entry.pw_uid, entry.pw_gid


def make_traversable(path: Path) -> None:
    """Let the server's user pass through `path` and its parents (o+x: enter, not list)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)
            print(
                f"flowrunner: made {directory} enterable by others (o+x) for user {SERVER_USER}",
                file=sys.stderr,
            )


def child_options(account: tuple[int, int] | None) -> dict:
    """subprocess options for initdb and postgres: as the server's user under root, from `/`, in the C locale."""
    options: dict = {"cwd": "/", "env": {**os.environ, "LC_ALL": "C"}}
    if account is not None:
        options.update(user=account[0], group=account[1], extra_groups=[])
    return options


def die_with_parent(sig: int):  # noqa: ANN201
    """preexec_fn: the child gets `sig` (for PostgreSQL, a shutdown request) when this process dies, even by
    SIGKILL. Linux only; the kernel sends it when the spawning *thread* ends, so spawn from one that lasts."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: only the call runs in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(sig))  # PR_SET_PDEATHSIG; after the uid change, which would clear it
        if os.getppid() != parent:  # the parent died before the line above: start nothing
            os._exit(1)

    return preexec
