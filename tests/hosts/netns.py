"""Worker "hosts" as Linux network namespaces: a veth link each on a test subnet, and TCP forwarders from the
host side of every link to the local PostgreSQL and Redis (the only addresses a host can reach)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field

# A /30 per host inside it: .1 is the host side (where the servers are reached), .2 the namespace's own.
SUBNET = ipaddress.ip_network(os.environ.get("FLOWRUNNER_HOSTS_SUBNET", "10.213.47.0/24"))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be worker hosts here (None: they can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    for tool in ("ip", "unshare", "hostname"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2, util-linux)"
    if os.geteuid() != 0:
        return "creating network namespaces and veth links needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    probe = f"frh-probe-{os.getpid()}"
    added = _ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"the kernel or sandbox refuses `ip netns add`: {added.stderr.strip()}"
    try:
        inside = subprocess.run(
            ["ip", "netns", "exec", probe, "unshare", "--uts", "--", "hostname", "frh-probe"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if inside.returncode != 0:
            return f"a namespace cannot get a hostname of its own (unshare --uts): {inside.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    taken = [
        line.split()[3]
        for line in _ip("-o", "-4", "addr", "show").stdout.splitlines()
        if ipaddress.ip_interface(line.split()[3]).ip in SUBNET
    ]
    if taken:
        used = ", ".join(taken)
        return (
            f"the test subnet {SUBNET} is already used on this machine ({used}): set FLOWRUNNER_HOSTS_SUBNET"
        )
    return None


@dataclass
class NetHost:
    """One namespace with its hostname and the veth link to the machine (`cut()` / `restore()` it)."""

    hostname: str
    namespace: str
    host_if: str
    host_ip: str
    ip: str
    env: dict[str, str] = field(default_factory=dict)

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace, with its own UTS namespace named `hostname`."""
        return [
            "ip", "netns", "exec", self.namespace, "unshare", "--uts", "--",
            "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *argv,
        ]  # fmt: skip

    def cut(self) -> None:
        """The link goes down on the machine's side: packets are dropped, connections hang (no reset)."""
        _ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def describe(self) -> str:
        return f"{self.hostname} (netns {self.namespace}, {self.ip}/30, servers via {self.host_ip})"


def create_hosts(hostnames: list[str]) -> list[NetHost]:
    """A namespace and a veth link per hostname, addressed from SUBNET; undone by `remove_hosts`."""
    tag = f"{os.getpid() % 100000}"
    hosts: list[NetHost] = []
    try:
        for index, hostname in enumerate(hostnames):
            base = SUBNET.network_address + 4 * index
            letter = chr(ord("a") + index)
            host = NetHost(
                hostname=hostname,
                namespace=f"frh-{tag}-{letter}",
                host_if=f"frh{tag}{letter}h",  # interface names: 15 characters at most
                host_ip=str(base + 1),
                ip=str(base + 2),
            )
            hosts.append(host)
            peer = f"frh{tag}{letter}n"
            _ip("netns", "add", host.namespace)
            _ip("link", "add", host.host_if, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", host.namespace)
            _ip("addr", "add", f"{host.host_ip}/30", "dev", host.host_if)
            _ip("link", "set", host.host_if, "up")
            for args in (
                ("addr", "add", f"{host.ip}/30", "dev", peer),
                ("link", "set", peer, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("netns", "exec", host.namespace, "ip", *args)
    except BaseException:
        remove_hosts(hosts)
        raise
    return hosts


def remove_hosts(hosts: list[NetHost]) -> None:
    for host in hosts:
        _ip("netns", "del", host.namespace, check=False)  # takes the namespace's end of the veth pair with it
        _ip("link", "del", host.host_if, check=False)  # gone with its peer already; kept for a half-made host


class Forwarder:
    """TCP forwarders on one asyncio loop in a thread: `add(listen_ip, target)` returns the port it listens on."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.base_events.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name="hosts-forwarder", daemon=True)
        self._thread.start()

    def add(self, listen_ip: str, target: tuple[str, int]) -> int:
        async def start() -> asyncio.base_events.Server:
            return await asyncio.start_server(
                lambda reader, writer: self._connect(reader, writer, target), listen_ip, 0
            )

        server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=10)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target) -> None:  # noqa: ANN001
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        with contextlib.suppress(asyncio.CancelledError):  # close() cancels every connection
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
