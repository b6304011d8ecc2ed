"""The edge of /api/v1/ws: handshake auth and Origin (refused before the upgrade), then frame validation."""

from __future__ import annotations

import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from accounts.services import api_token_create
from executions.ws_auth import origin_allowed
from flowrunner.asgi import application
from tests.conftest import PASSWORD
from tests.executions.websocket import WS_PATH, asynchronous, basic_header, connected, ping_pong, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("in_memory_layer")]


def handshake(headers: list[tuple[bytes, bytes]], *, path: str = WS_PATH, ip: str = "10.1.1.1") -> bool:
    """True when the server accepted the upgrade; False when it closed before accepting (daphne → 403)."""

    async def scenario() -> bool:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        communicator.scope["client"] = (ip, 50000)
        connected, _ = await communicator.connect()
        if connected:
            await communicator.send_json_to({"type": "ping"})
            assert (await communicator.receive_json_from())["type"] == "pong"
        await communicator.disconnect()
        return connected

    return async_to_sync(scenario)()


def test_handshake_accepts_basic_credentials(member):
    # given a member's username and password
    _, user = member
    # when the handshake carries them as HTTP Basic
    accepted = handshake([basic_header(user.username, PASSWORD)])
    # then the connection is upgraded and usable
    assert accepted


def test_handshake_accepts_bearer_token(member):
    # given an API token of the member
    _, user = member
    _, raw = api_token_create(user=user)
    # when the handshake carries it as a Bearer token
    accepted = handshake([(b"authorization", f"Bearer {raw}".encode())])
    # then the connection is upgraded
    assert accepted


def test_handshake_accepts_session_cookie(member):
    # given a logged-in browser session of the member
    _, user = member
    browser = Client()
    browser.force_login(user)
    session_key = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={session_key}".encode()
    # when the handshake carries only the session cookie
    accepted = handshake([(b"cookie", cookie)])
    # then the connection is upgraded
    assert accepted


def test_handshake_refuses_wrong_password_before_accept(member):
    # given a wrong password
    _, user = member
    # when the handshake carries it
    accepted = handshake([basic_header(user.username, "not-the-password")])
    # then the server closes before accepting (no upgrade)
    assert not accepted


def test_handshake_refuses_unknown_bearer_token(member):
    # given a token that was never issued
    # when the handshake carries it
    accepted = handshake([(b"authorization", b"Bearer fr_not_a_real_token")])
    # then it is refused
    assert not accepted


def test_handshake_refuses_missing_credentials(member):
    # given no Authorization header and no session
    # when the handshake happens
    accepted = handshake([])
    # then it is refused
    assert not accepted


def test_handshake_refuses_wrong_basic_even_with_valid_session(member):
    # given a valid session cookie but also a wrong Basic header
    _, user = member
    browser = Client()
    browser.force_login(user)
    cookie = (
        f"{django_settings.SESSION_COOKIE_NAME}={browser.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    )
    # when both are sent
    accepted = handshake([(b"cookie", cookie.encode()), basic_header(user.username, "wrong")])
    # then the explicit credentials decide, as in the REST API, and the handshake is refused
    assert not accepted


def test_handshake_refuses_session_of_user_without_account(db):
    # given a logged-in user that belongs to no account (e.g. a bare superuser)
    user = get_user_model().objects.create_user(username="loner", password=PASSWORD)
    browser = Client()
    browser.force_login(user)
    cookie = (
        f"{django_settings.SESSION_COOKIE_NAME}={browser.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    )
    # when the handshake carries the session
    accepted = handshake([(b"cookie", cookie.encode())])
    # then it is refused: there is no tenant to scope anything to
    assert not accepted


def test_handshake_throttles_repeated_failures(member, settings):
    # given a failure limit of 2 per window and two failed handshakes from one IP
    settings.FLOWRUNNER_AUTH_FAILURE_LIMIT = 2
    _, user = member
    for _ in range(2):
        assert not handshake([basic_header(user.username, "wrong")], ip="10.9.9.9")
    # when the right password comes from the same IP within the window
    accepted = handshake([basic_header(user.username, PASSWORD)], ip="10.9.9.9")
    # then it is refused, from another IP too (failures count per IP and per username) until the window ends
    assert not accepted
    assert not handshake([basic_header(user.username, PASSWORD)], ip="10.8.8.8")
    cache.clear()  # the window ends
    assert handshake([basic_header(user.username, PASSWORD)], ip="10.8.8.8")


def test_handshake_refuses_foreign_origin(member):
    # given valid credentials but a browser Origin that is not an allowed host
    _, user = member
    # when the handshake happens
    accepted = handshake([basic_header(user.username, PASSWORD), (b"origin", b"https://evil.example")])
    # then it is refused
    assert not accepted


def test_handshake_accepts_allowed_origin(member):
    # given valid credentials and an Origin naming an allowed host (with a port)
    _, user = member
    # when the handshake happens
    accepted = handshake([basic_header(user.username, PASSWORD), (b"origin", b"http://localhost:8000")])
    # then it is accepted
    assert accepted


def test_handshake_accepts_missing_origin(member):
    # given valid credentials from a program that sends no Origin
    _, user = member
    # when the handshake happens
    accepted = handshake([basic_header(user.username, PASSWORD)])
    # then it is accepted
    assert accepted


def test_handshake_refuses_other_paths(member):
    # given valid credentials
    _, user = member
    # when the handshake targets another path (or a trailing slash)
    accepted = [
        handshake([basic_header(user.username, PASSWORD)], path=path) for path in ("/ws", "/api/v1/ws/")
    ]
    # then it is refused
    assert accepted == [False, False]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (b"http://localhost", True),
        (b"https://127.0.0.1:8443", True),
        (b"http://[::1]:8000", True),
        (b"http://testserver", True),
        (b"null", False),
        (b"http://evil.example", False),
        (b"http://localhost.evil.example", False),
        (b"file://localhost", False),
        (b"http://user@localhost", False),
        (b"\xff\xfe", False),
    ],
)
def test_origin_allowed_matches_allowed_hosts(settings, origin, allowed):
    # given the default allowed hosts
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
    # when an Origin is checked / then it matches only an allowed host
    assert origin_allowed(origin) is allowed


def test_origin_allowed_supports_subdomain_wildcard(settings):
    # given an allowed host with a leading dot (the domain and its subdomains)
    settings.ALLOWED_HOSTS = [".example.com"]
    # when origins are checked / then the domain and its subdomains match, others do not
    assert origin_allowed(b"https://app.example.com")
    assert origin_allowed(b"https://example.com")
    assert not origin_allowed(b"https://example.com.evil.net")


# --- frames after the handshake -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "dance"}', "unknown type"),
        ('{"execution_id": "x"}', "`type` is required"),
        ('{"type": "subscribe"}', "`execution_id` is required"),
        ('{"type": "subscribe", "execution_id": 42}', "must be a string"),
        ('{"type": "unsubscribe", "execution_id": "not-a-uuid"}', "not a valid UUID"),
    ],
)
@asynchronous
async def test_malformed_frame_answers_error_and_connection_stays_open(member, raw, message_part):
    # given a connected client
    async with connected(member[1]) as ws:
        # when it sends a malformed frame
        await ws.send_to(text_data=raw)
        frame = await receive(ws)
        # then an error frame of the one shape explains it, and ping still gets pong
        assert set(frame) == {"type", "execution_id", "seq", "timestamp", "message"}
        assert (frame["type"], frame["execution_id"], frame["seq"]) == ("error", None, None)
        assert message_part in frame["message"]
        await ping_pong(ws)


@asynchronous
async def test_oversized_and_binary_frames_answer_error(member, settings):
    # given a 1 KiB frame limit
    settings.FLOWRUNNER_WS_MAX_FRAME_BYTES = 1024
    async with connected(member[1]) as ws:
        # when the client sends a frame over the limit (in UTF-8 bytes, not characters), then a binary frame
        await ws.send_to(text_data=json.dumps({"type": "ping", "pad": "é" * 600}, ensure_ascii=False))
        too_large = await receive(ws)
        await ws.send_to(bytes_data=b'{"type": "ping"}')
        binary = await receive(ws)
        # then each gets an error and the connection stays usable
        assert too_large["type"] == "error" and "too large" in too_large["message"]
        assert binary["type"] == "error" and "binary" in binary["message"]
        await ping_pong(ws)


@asynchronous
async def test_ping_answers_pong(member):
    # given a connected client
    async with connected(member[1]) as ws:
        # when it pings / then it gets a pong of the one frame shape
        await ping_pong(ws)


@asynchronous
async def test_invalid_since_answers_error_naming_the_execution(member):
    # given a connected client
    execution_id = str(uuid.uuid4())
    async with connected(member[1]) as ws:
        # when it subscribes with a negative `since`
        await ws.send_json_to({"type": "subscribe", "execution_id": execution_id, "since": -1})
        frame = await receive(ws)
        # then one error names the execution (before any lookup) and the connection stays usable
        assert (frame["type"], frame["execution_id"]) == ("error", execution_id)
        assert "since" in frame["message"]
        await ping_pong(ws)
