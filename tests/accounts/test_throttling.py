"""Throttling of failed logins and authentications (429 in the envelope); good clients never throttled."""

import time

import pytest
from rest_framework.test import APIClient

from accounts import services, throttling
from core.errors import TooManyAttempts
from tests.conftest import PASSWORD
from tests.helpers import basic

LIMIT = 3


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.FLOWRUNNER_AUTH_FAILURE_LIMIT = LIMIT
    settings.FLOWRUNNER_AUTH_FAILURE_WINDOW = 60


def login(username: str, password: str, ip: str = "10.0.0.1"):
    body = {"username": username, "password": password}
    return APIClient(REMOTE_ADDR=ip).post("/api/v1/login", body, format="json")


def me(header: str, ip: str = "10.0.0.1"):
    return APIClient(REMOTE_ADDR=ip).get("/api/v1/accounts/me", HTTP_AUTHORIZATION=header)


@pytest.mark.django_db
def test_login_is_throttled_after_n_failures(member):
    # given N failed logins
    for _ in range(LIMIT):
        assert login("alice", "wrong").status_code == 401
    # when one more attempt is made, even with the right password, then 429 in the envelope with Retry-After
    response = login("alice", PASSWORD)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60


@pytest.mark.django_db
def test_login_throttle_is_per_username_across_ips(member):
    # given N failures on alice from different addresses
    for index in range(LIMIT):
        assert login("alice", "wrong", ip=f"10.0.1.{index}").status_code == 401
    # when alice is tried from yet another address, then 429; another user from there is fine
    assert login("alice", PASSWORD, ip="10.0.2.1").status_code == 429
    assert login("bob", "wrong", ip="10.0.2.1").status_code == 401


@pytest.mark.django_db
def test_login_throttle_is_per_ip_across_usernames(member):
    # given N failures from one address on different usernames
    for index in range(LIMIT):
        assert login(f"user{index}", "wrong", ip="10.0.3.1").status_code == 401
    # when that address tries again, then 429; alice from elsewhere still logs in
    assert login("alice", PASSWORD, ip="10.0.3.1").status_code == 429
    assert login("alice", PASSWORD, ip="10.0.3.2").status_code == 200


@pytest.mark.django_db
def test_basic_failures_are_throttled(member):
    # given N failed Basic calls, when one more comes, then 429
    for _ in range(LIMIT):
        assert me(basic("alice", "wrong")).status_code == 401
    assert me(basic("alice", "wrong")).status_code == 429


@pytest.mark.django_db
def test_bearer_failures_are_throttled_but_a_valid_token_still_works(member):
    # given N bad tokens from one address
    _, raw = services.api_token_create(user=member[1])
    for _ in range(LIMIT):
        assert me("Bearer fr_guess").status_code == 401
    # when another bad token comes, then 429; a valid token from the same address is still served
    assert me("Bearer fr_guess").status_code == 429
    assert me(f"Bearer {raw}").status_code == 200


@pytest.mark.django_db
def test_authenticated_clients_are_never_throttled(member):
    # given a client that authenticates correctly many times with Basic, Bearer and login
    _, raw = services.api_token_create(user=member[1])
    for _ in range(LIMIT * 5):
        assert me(basic("alice", PASSWORD)).status_code == 200
        assert me(f"Bearer {raw}").status_code == 200
        assert login("alice", PASSWORD).status_code == 200


@pytest.mark.django_db
def test_remembered_basic_credential_survives_a_username_lockout(member):
    # given alice verified by Basic a moment ago, and then an attacker burning her failures
    assert me(basic("alice", PASSWORD), ip="10.0.4.1").status_code == 200
    for _ in range(LIMIT + 1):
        me(basic("alice", "wrong"), ip="10.0.5.1")
    # when alice calls again with her (remembered) credential, then she is served
    assert me(basic("alice", PASSWORD), ip="10.0.4.1").status_code == 200


@pytest.mark.django_db
def test_throttle_window_expires(member, settings):
    # given a one-second window used up
    settings.FLOWRUNNER_AUTH_FAILURE_WINDOW = 1
    for _ in range(LIMIT):
        login("alice", "wrong")
    assert login("alice", PASSWORD).status_code == 429
    # when the window has passed, then alice logs in
    time.sleep(1.2)
    assert login("alice", PASSWORD).status_code == 200


class _Refused(Exception):
    pass


def _refuse():
    raise _Refused()


def test_guarded_login_counts_failures_then_refuses_before_trying():
    # given LIMIT attempts that fail with the failure kind
    for _ in range(LIMIT):
        with pytest.raises(_Refused):
            throttling.guarded_login(_refuse, username="carol", ip="10.0.0.9", failure=_Refused)
    # when one more attempt is made, then it is refused without being tried
    tried = []
    with pytest.raises(TooManyAttempts):
        throttling.guarded_login(lambda: tried.append(1), username="carol", ip="10.0.0.8", failure=_Refused)
    assert tried == []


def test_guarded_login_success_forgets_the_username_and_other_errors_do_not_count():
    # given LIMIT - 1 failures and an error of another kind
    for _ in range(LIMIT - 1):
        with pytest.raises(_Refused):
            throttling.guarded_login(_refuse, username="dave", ip="10.0.0.7", failure=_Refused)
    with pytest.raises(ValueError):
        throttling.guarded_login(lambda: int("x"), username="dave", ip="10.0.0.6", failure=_Refused)
    # when an attempt succeeds, then its result comes back and the username's count starts again
    assert throttling.guarded_login(lambda: "ok", username="dave", ip="10.0.0.6", failure=_Refused) == "ok"
    with pytest.raises(_Refused):
        throttling.guarded_login(_refuse, username="dave", ip="10.0.0.5", failure=_Refused)
    assert throttling.guarded_login(lambda: "ok", username="dave", ip="10.0.0.5", failure=_Refused) == "ok"
