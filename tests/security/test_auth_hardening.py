"""Auth on the live stack: failures throttled, PBKDF2 hashes, tokens revocable and expiring, CSRF, headers."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.helpers import assert_envelope
from tests.security.helpers import bearer_token, client_from, transform_flow

pytestmark = [pytest.mark.faults]


def _limit(live_stack) -> int:
    return int(live_stack.env.get("FLOWRUNNER_AUTH_FAILURE_LIMIT", 10))


def _address() -> str:
    """A client address no other test uses (127.0.0.0/8 all reaches the stack on Linux)."""
    return f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/login", json={"username": username, "password": password})


def test_failures_against_one_account_are_throttled_from_any_address(live_stack, live_user):
    limit = _limit(live_stack)
    # given `limit` failed attempts on one account, by /login and by Basic, each from a different address
    for attempt in range(limit):
        with client_from(live_stack, _address()) as client:
            if attempt % 2:
                response = _login(client, live_user.username, f"wrong-{attempt}")
            else:
                response = client.get("/accounts/me", auth=(live_user.username, f"wrong-{attempt}"))
        assert_envelope(response, 401)
    # when the right password comes next, from yet another address, by /login and by Basic
    with client_from(live_stack, _address()) as client:
        login = _login(client, live_user.username, live_user.password)
        basic = client.get("/accounts/me", auth=live_user.auth)
    # then both are refused with 429 and a Retry-After, until the window ends
    for response in (login, basic):
        assert_envelope(response, 429, "throttled")
        assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_failures_from_one_address_are_throttled_for_every_account(live_stack, live_user, make_live_user):
    limit = _limit(live_stack)
    noisy, quiet = _address(), _address()
    with client_from(live_stack, noisy) as client:
        # given one address that failed `limit` times, each time on another (made-up) account or token
        for attempt in range(limit):
            if attempt % 3 == 0:
                response = _login(client, f"nobody_{secrets.token_hex(4)}", "x" * 12)
            elif attempt % 3 == 1:
                response = client.get("/flows", auth=(f"nobody_{secrets.token_hex(4)}", "x" * 12))
            else:
                response = client.get(
                    "/flows", headers={"Authorization": f"Bearer fr_{secrets.token_hex(16)}"}
                )
            assert_envelope(response, 401)
        # when a real user signs in from that address
        refused = _login(client, live_user.username, live_user.password)
        refused_token = client.get("/flows", headers={"Authorization": "Bearer fr_made_up"})
    # then it is refused with 429, while the same user from another address gets in
    assert_envelope(refused, 429, "throttled")
    assert_envelope(refused_token, 429, "throttled")
    with client_from(live_stack, quiet) as client:
        assert _login(client, live_user.username, live_user.password).status_code == 200


def test_a_well_behaved_client_is_never_throttled(live_stack, live_user):
    # given a client that authenticates correctly, many times over, by Basic and by Bearer
    with client_from(live_stack, _address()) as client:
        token = _login(client, live_user.username, live_user.password).json()["token"]
        statuses = {client.get("/accounts/me", auth=live_user.auth).status_code for _ in range(30)}
        statuses |= {
            client.get("/accounts/me", headers={"Authorization": f"Bearer {token}"}).status_code
            for _ in range(30)
        }
    # then every request is answered
    assert statuses == {200}


def test_passwords_are_stored_with_djangos_pbkdf2_hasher(live_stack, live_db):
    from django.contrib.auth import get_user_model

    # given an account created through the API
    username, password = f"hash_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    response = httpx.post(f"{live_stack.api_url}/accounts", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    # when its stored password is read
    stored = get_user_model().objects.get(username=username).password
    # then it is a PBKDF2-SHA256 hash with Django's iteration count, not the password
    algorithm, iterations, salt, digest = stored.split("$")
    assert algorithm == "pbkdf2_sha256" and int(iterations) >= 600_000
    assert password not in stored and salt and digest


def test_a_token_is_refused_once_revoked_by_logout(live_stack, live_user, live_db):
    from accounts.models import ApiToken
    from accounts.services import token_digest

    token = bearer_token(live_stack, live_user)
    bearer = {"Authorization": f"Bearer {token}"}
    with live_stack.client() as client:
        # given a token that works (and is stored only as a digest)
        assert client.get("/accounts/me", headers=bearer).status_code == 200
        row = ApiToken.objects.get(token_hash=token_digest(token))
        assert not ApiToken.objects.filter(token_hash=token).exists() and row.revoked_at is None
        # when its holder logs out with it
        logout = client.post("/logout", headers=bearer)
        # then it is revoked: every later use is a 401 with a challenge, for REST and WebSocket alike
        after = client.get("/accounts/me", headers=bearer)
        again = client.post("/logout", headers=bearer)
        basic = client.post("/logout", auth=live_user.auth)
    assert logout.status_code == 204
    assert_envelope(after, 401, "invalid_token")
    assert after.headers["WWW-Authenticate"]
    assert_envelope(again, 401)
    assert_envelope(basic, 400, "not_revocable")
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert _ws_refused(live_stack, bearer)


def test_an_expired_token_is_refused(live_stack, live_user, live_db):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.models import ApiToken
    from accounts.services import api_token_create

    # given a token whose expiry has passed (and one that expires in the future)
    user = get_user_model().objects.get(username=live_user.username)
    expired, expired_raw = api_token_create(user=user, name="expired", ttl=3600)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _, live_raw = api_token_create(user=user, name="live", ttl=3600)
    with live_stack.client() as client:
        # when each is used
        refused = client.get("/accounts/me", headers={"Authorization": f"Bearer {expired_raw}"})
        accepted = client.get("/accounts/me", headers={"Authorization": f"Bearer {live_raw}"})
    # then the expired one is a 401 (REST and WebSocket), the other works
    assert_envelope(refused, 401, "invalid_token")
    assert accepted.status_code == 200
    assert _ws_refused(live_stack, {"Authorization": f"Bearer {expired_raw}"})


def _ws_refused(live_stack, headers: dict[str, str]) -> bool:
    async def attempt() -> bool:
        try:
            async with connect(live_stack.ws_url, additional_headers=headers, open_timeout=20):
                return False
        except InvalidStatus as refused:
            return refused.response.status_code == 403

    return asyncio.run(attempt())


@pytest.fixture
def session_cookie(live_user, live_db) -> str:
    """A Django session of `live_user`, as the dashboard's sign-in would leave it (database sessions)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=live_user.username))
    return client.cookies["sessionid"].value


def test_session_writes_need_the_csrf_token(live_stack, session_cookie):
    csrf = secrets.token_hex(16)  # a 32-character CSRF secret, as Django keeps it in the cookie
    body = {"content": transform_flow("csrf", "return 1")}
    with live_stack.client() as client:
        client.cookies.set("sessionid", session_cookie)
        # given a browser session that reads fine
        assert client.get("/accounts/me").status_code == 200
        # when it writes without the CSRF token, with a cookie but no header, and with both
        missing = client.post("/flows", json=body)
        client.cookies.set("csrftoken", csrf)
        header_missing = client.post("/flows", json=body)
        logout = client.post("/logout")
        with_token = client.post("/flows", json=body, headers={"X-CSRFToken": csrf})
    # then the writes without the token are 403s in the envelope, and the one with it succeeds
    for response in (missing, header_missing, logout):
        error = assert_envelope(response, 403, "permission_denied")
        assert "CSRF" in error["message"]
    assert with_token.status_code == 201, with_token.text


def test_a_session_websocket_from_a_foreign_origin_is_refused(live_stack, session_cookie):
    cookie = {"Cookie": f"sessionid={session_cookie}"}

    async def handshake(origin: str | None) -> int:
        headers = dict(cookie, **({"Origin": origin} if origin else {}))
        try:
            async with connect(live_stack.ws_url, additional_headers=headers, open_timeout=20):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    # given the session cookie a browser would attach, when pages of two origins open the socket
    own = asyncio.run(handshake(live_stack.base_url))
    foreign = asyncio.run(handshake("https://evil.example"))
    # then only the page of an allowed host gets it (no cross-site WebSocket hijacking)
    assert (own, foreign) == (101, 403)


@pytest.mark.parametrize("path", ["/", "/login", "/admin/login/"])
def test_pages_carry_the_security_headers(live_stack, path):
    # given a page of the site (the dashboard and the admin)
    response = httpx.get(f"{live_stack.base_url}{path}", timeout=30)
    if response.status_code == 404:
        pytest.skip(f"{path} does not exist (yet)")
    # then it cannot be framed, sniffed, or leak its URL to other sites
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in (
        "same-origin",
        "strict-origin-when-cross-origin",
        "no-referrer",
    )


@pytest.mark.parametrize("path", ["/", "/login"])
def test_dashboard_pages_carry_a_strict_content_security_policy(live_stack, path):
    # given a dashboard page (signed out: the sign-in page, or the redirect to it)
    response = httpx.get(f"{live_stack.base_url}{path}", timeout=30)
    if response.status_code == 404 or not response.headers.get("Content-Type", "").startswith("text/html"):
        pytest.skip("the dashboard is not there (yet)")
    policy = response.headers.get("Content-Security-Policy", "")
    directives = dict((part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";") if part.strip())
    scripts = directives.get("script-src", directives.get("default-src", ""))
    # then scripts come only from the site itself, and no other site may frame it
    assert scripts and "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, policy
    assert directives.get("frame-ancestors") == "'none'", policy
