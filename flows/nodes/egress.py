"""The egress policy of nodes' outbound HTTP: which addresses a flow may reach, checked on every connection."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx
from django.conf import settings

from flows.nodes.base import PermanentNodeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused whatever the configuration: the metadata services hand out the host's cloud credentials, and
# link-local is where they (and other host-internal endpoints) live.
_ALWAYS = [
    ("169.254.169.254/32", "the cloud metadata service"),
    ("fd00:ec2::254/128", "the cloud metadata service (AWS IPv6)"),
    ("100.100.100.200/32", "the cloud metadata service (Alibaba Cloud)"),
    ("168.63.129.16/32", "the Azure host's platform endpoint"),
    ("169.254.0.0/16", "a link-local address"),
    ("fe80::/10", "a link-local address"),
    ("224.0.0.0/4", "a multicast address"),
    ("ff00::/8", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
]
# The server's own services and its networks: refused on a shared server unless the operator allows them.
_PRIVATE = [
    ("127.0.0.0/8", "a loopback address"),
    ("::1/128", "a loopback address"),
    # Connecting to 0.0.0.0 or :: reaches this very machine.
    ("0.0.0.0/8", "an unspecified address (this host)"),
    ("::/128", "an unspecified address (this host)"),
    ("10.0.0.0/8", "a private network"),
    ("172.16.0.0/12", "a private network"),
    ("192.168.0.0/16", "a private network"),
    ("100.64.0.0/10", "a carrier-grade NAT network"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("198.18.0.0/15", "a benchmarking network"),
    ("fc00::/7", "a unique local (private) IPv6 network"),
    ("fec0::/10", "a site-local IPv6 network"),
]
_ALWAYS_NETS = [(ipaddress.ip_network(net), why) for net, why in _ALWAYS]
_PRIVATE_NETS = [(ipaddress.ip_network(net), why) for net, why in _PRIVATE]
# IPv6 prefixes that carry an IPv4 address a router may deliver to: NAT64 (well-known and local use).
_NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

PRIVATE_HINT = (
    "private and loopback addresses are refused unless FLOWRUNNER_HTTP_ALLOW_PRIVATE=true "
    "or the host is listed in FLOWRUNNER_HTTP_ALLOWED_HOSTS"
)


class EgressRefused(PermanentNodeError):
    """The policy refused an address; the message says which and why. Never retried: the answer would not
    change."""

    type = "egress_refused"

    # `host` has a default: an exception is unpickled from its args alone.
    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.host = host


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo client, NAT64, IPv4-compatible)."""
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _first_match(address: IPAddress, nets: list) -> str | None:
    for net, why in nets:
        if address.version == net.version and address in net:
            return f"{why} ({net})" if net.num_addresses > 1 else why
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """What outbound requests may reach. `allowed_hosts` entries are host names (`api.internal`), wildcards
    (`*.internal`), addresses or networks (`10.1.2.3`, `10.1.0.0/16`); they lift the private-network refusal
    only, never the one of link-local and metadata addresses."""

    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_response_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5

    @classmethod
    def from_settings(cls) -> EgressPolicy:
        return cls(
            allow_private=settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE,
            allowed_hosts=tuple(settings.FLOWRUNNER_HTTP_ALLOWED_HOSTS),
            max_response_bytes=settings.FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES,
            max_redirects=settings.FLOWRUNNER_HTTP_MAX_REDIRECTS,
        )

    def _listed(self, host: str, address: IPAddress) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.allowed_hosts:
            entry = entry.lower()
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if entry.startswith("*.") and host.endswith(entry[1:]) or host == entry:
                    return True
                continue
            if address.version == network.version and address in network:
                return True
        return False

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why `address` (which `host` resolved to) may not be reached, or None when it may."""
        ipv4 = embedded_ipv4(address)
        for candidate in (address, ipv4) if ipv4 is not None else (address,):
            always = _first_match(candidate, _ALWAYS_NETS)
            if always:
                return f"{always}, which is always refused"
        if self.allow_private or self._listed(host, address):
            return None
        for candidate in (address, ipv4) if ipv4 is not None else (address,):
            private = _first_match(candidate, _PRIVATE_NETS)
            if private:
                return f"{private}; {PRIVATE_HINT}"
        return None

    def vet(self, host: str, port: int) -> list[str]:
        """Resolve `host` once and check every address it has: the addresses to connect to, in order. One
        refused address refuses the host, so which answer a resolver gives first cannot matter."""
        addresses = resolve(host, port)
        for address in addresses:
            why = self.refusal(host, address)
            if why is not None:
                shown = str(address) if host == str(address) else f"{address} (of {host})"
                raise EgressRefused(f"address {shown} is not allowed: {why}", host=host)
        return [str(address) for address in addresses]


def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses, without duplicates, in the resolver's order (an address literal is itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}")
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy vetted for the host it was asked
    for: resolved once, checked, and that very address dialled, so DNS cannot answer differently between
    the check and the connection. TLS still runs against the host name (httpcore passes it as SNI)."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self._policy.vet(host, port):
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # vet() returns at least one address or raises
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable | None = None
    ) -> httpcore.NetworkStream:
        raise EgressRefused(f"unix socket {path} is not allowed", host=path)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport over a `PinnedBackend`: every connection it opens, redirects' included, is
    vetted."""

    def __init__(self, policy: EgressPolicy, *, verify: ssl.SSLContext | bool = True) -> None:
        # Not super().__init__(): httpx takes no network backend, so the pool it would build is replaced by
        # the same pool over ours (handle_request and close only use `_pool`).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            network_backend=PinnedBackend(policy),
            http1=True,
            http2=False,
        )
