"""The egress policy: which addresses are refused and why, the allowlist, and connections pinned to the address
that was checked (plain and TLS), against local servers only."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flows.nodes.egress import PRIVATE_HINT, EgressPolicy, EgressRefused, PinnedTransport

REAL_GETADDRINFO = socket.getaddrinfo

ALWAYS_REFUSED = [
    "169.254.169.254",
    "169.254.170.2",
    "169.254.0.1",
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "168.63.129.16",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "224.0.0.1",
    "255.255.255.255",
]
PRIVATE = [
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "0.0.0.0",
    "::",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "::127.0.0.1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


def _ip(text: str):
    return ipaddress.ip_address(text)


@pytest.fixture
def fake_dns(monkeypatch):
    """fake_dns({"name": ["addr", ...] or callable}) makes socket.getaddrinfo answer those names (every other
    name resolves for real); returns a list recording every name asked."""
    asked: list[str] = []

    def install(answers):
        def getaddrinfo(host, port, *args, **kwargs):
            if host in answers:
                asked.append(host)
                found = answers[host]() if callable(answers[host]) else answers[host]
                return [
                    (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in found
                ]
            return REAL_GETADDRINFO(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return asked

    return install


@pytest.fixture
def connections(monkeypatch):
    """Every address a socket connection was attempted to, recorded (and still made)."""
    attempted: list[str] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        attempted.append(address[0])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempted


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_egress_refuses_metadata_and_link_local_whatever_the_configuration(address):
    # given the most permissive policy: private networks allowed, the address and its network allowlisted
    policy = EgressPolicy(allow_private=True, allowed_hosts=(address, "169.254.0.0/16", "fe80::/10", "meta"))
    # when the address is checked (as itself and as a listed host name's answer)
    reasons = [policy.refusal(address, _ip(address)), policy.refusal("meta", _ip(address))]
    # then it is refused, saying it always is
    assert all(reason and "always refused" in reason for reason in reasons), reasons


@pytest.mark.parametrize("address", PRIVATE)
def test_egress_refuses_loopback_and_private_addresses_unless_private_is_allowed(address):
    # given the shared-server default and the embedded one
    strict, embedded = EgressPolicy(allow_private=False), EgressPolicy(allow_private=True)
    # when the address is checked / then the default refuses it saying how to allow it; embedded allows it
    reason = strict.refusal(address, _ip(address))
    assert reason is not None and reason.endswith(PRIVATE_HINT), reason
    assert embedded.refusal(address, _ip(address)) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_egress_allows_public_addresses(address):
    # given the strict policy / when a public address is checked (no connection is made) / then it passes
    assert EgressPolicy(allow_private=False).refusal("example.com", _ip(address)) is None


def test_egress_refusal_names_the_kind_of_address():
    # given the strict policy / when typical addresses are checked / then the reason says what each one is
    policy = EgressPolicy()
    assert policy.refusal("h", _ip("169.254.169.254")).startswith("the cloud metadata service, which is")
    assert policy.refusal("h", _ip("127.0.0.1")).startswith("a loopback address (127.0.0.0/8);")
    assert policy.refusal("h", _ip("10.0.0.1")).startswith("a private network (10.0.0.0/8);")
    assert policy.refusal("h", _ip("fe80::1")).startswith("a link-local address (fe80::/10), which is")


def test_egress_allowed_hosts_lift_the_private_refusal_for_listed_hosts_only():
    # given an allowlist of a name, a wildcard, an address and a network
    policy = EgressPolicy(allowed_hosts=("api.internal", "*.corp.example", "127.0.0.2", "10.1.0.0/16"))
    # when private addresses are checked under listed and unlisted names / then only listed ones pass
    assert policy.refusal("api.internal", _ip("10.9.9.9")) is None
    assert policy.refusal("API.Internal.", _ip("10.9.9.9")) is None
    assert policy.refusal("db.corp.example", _ip("192.168.0.5")) is None
    assert policy.refusal("any.name", _ip("127.0.0.2")) is None
    assert policy.refusal("any.name", _ip("10.1.200.3")) is None
    assert policy.refusal("corp.example", _ip("192.168.0.5")) is not None
    assert policy.refusal("evilapi.internal", _ip("10.9.9.9")) is not None
    assert policy.refusal("any.name", _ip("127.0.0.1")) is not None
    assert policy.refusal("any.name", _ip("10.2.0.1")) is not None


def test_egress_vet_refuses_a_host_when_any_of_its_addresses_is_refused(fake_dns):
    # given a name resolving to a public and a loopback address
    fake_dns({"mixed.example": ["93.184.216.34", "127.0.0.1"]})
    # when vetted / then refused, naming the address and the host
    with pytest.raises(EgressRefused, match=r"address 127\.0\.0\.1 \(of mixed\.example\) is not allowed"):
        EgressPolicy().vet("mixed.example", 80)


def test_egress_vet_answers_every_checked_address_in_order(fake_dns):
    # given a name with two public addresses (and a duplicate) / when vetted / then both, once each, in order
    fake_dns({"two.example": ["93.184.216.34", "2606:4700:4700::1111", "93.184.216.34"]})
    assert EgressPolicy().vet("two.example", 443) == ["93.184.216.34", "2606:4700:4700::1111"]


def _serve(server: ThreadingHTTPServer):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    return thread


class _HostEcho(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        body = (self.headers.get("Host") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def host_echo():
    """A server on 127.0.0.1 answering the Host header it received → its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostEcho)
    thread = _serve(server)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_egress_connects_to_the_address_it_checked_and_never_asks_dns_again(fake_dns, connections, host_echo):
    # given a name whose first answer is loopback (allowed here) and every later one the metadata address
    answers = iter([["127.0.0.1"]])
    asked = fake_dns({"rebind.test": lambda: next(answers, ["169.254.169.254"])})
    policy = EgressPolicy(allow_private=True)
    # when a request is made through the pinned transport
    with httpx.Client(transport=PinnedTransport(policy), timeout=5) as client:
        response = client.get(f"http://rebind.test:{host_echo}/")
    # then it reached the checked address, resolved once, with the name kept in the Host header
    assert response.status_code == 200 and response.text == f"rebind.test:{host_echo}"
    assert asked == ["rebind.test"] and connections == ["127.0.0.1"]


def test_egress_refuses_before_any_connection_is_attempted(fake_dns, connections):
    # given a name that resolves to the metadata address
    fake_dns({"metadata.test": ["169.254.169.254"]})
    # when a request is made through the pinned transport, under the most permissive policy
    policy = EgressPolicy(allow_private=True)
    with httpx.Client(transport=PinnedTransport(policy), timeout=5) as client:
        with pytest.raises(EgressRefused, match="the cloud metadata service, which is always refused"):
            client.get("http://metadata.test/latest/meta-data/")
        with pytest.raises(EgressRefused):
            client.get("http://169.254.169.254/latest/meta-data/")
    # then no socket was ever opened
    assert connections == []


def _certificate(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_egress_tls_goes_to_the_pinned_address_with_the_host_name_as_sni(fake_dns, connections, tmp_path):
    # given an HTTPS server on 127.0.0.1 whose certificate names only pinned.test, which resolves to it
    cert_pem, key_pem = _certificate("pinned.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_names: list[str | None] = []
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostEcho)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = _serve(server)
    fake_dns({"pinned.test": ["127.0.0.1"]})
    trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    try:
        # when it is called through the pinned transport, verifying the certificate
        transport = PinnedTransport(EgressPolicy(allow_private=True), verify=trust)
        with httpx.Client(transport=transport, timeout=5) as client:
            response = client.get(f"https://pinned.test:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    # then the connection went to the checked address, the TLS handshake named the host (SNI) and the
    # certificate verified against the name, and the Host header kept it
    assert connections == ["127.0.0.1"] and server_names == ["pinned.test"]
    assert response.status_code == 200 and response.text.startswith("pinned.test:")
