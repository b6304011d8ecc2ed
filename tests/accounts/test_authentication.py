"""Authentication: Basic (with its short cache), Bearer tokens, session; 401 carries WWW-Authenticate."""

import base64
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiToken, Membership
from tests.conftest import PASSWORD, make_member
from tests.helpers import basic

ME = "/api/v1/accounts/me"


def get_me(header: str | None = None):
    client = APIClient()
    return client.get(ME, HTTP_AUTHORIZATION=header) if header else client.get(ME)


def cache_dump() -> list[tuple[bytes, bytes]]:
    """Every (key, raw value) in the cache, for Redis or the in-memory backend."""
    store = getattr(cache, "_cache", None)
    if isinstance(store, dict):
        return [(key.encode(), value) for key, value in store.items()]
    client = store.get_client()
    return [(key, client.get(key) or b"") for key in client.keys("*")]


def count_hashing():
    """Patch the hasher entry point ModelBackend ends in, counting calls."""
    return mock.patch("django.contrib.auth.base_user.check_password", side_effect=check_password)


@pytest.mark.django_db
def test_basic_accepts_a_correct_password(member):
    # given alice's credentials, when she calls /accounts/me with Basic, then 200 and her account
    response = get_me(basic("alice", PASSWORD))
    assert response.status_code == 200
    assert response.json()["id"] == str(member[0].id)


@pytest.mark.django_db
def test_basic_rejects_a_wrong_password_with_a_challenge(member):
    # given a wrong password, when calling, then 401 in the envelope with WWW-Authenticate
    response = get_me(basic("alice", "wrong"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="api"'
    assert response.json()["error"]["code"] == "invalid_credentials"


@pytest.mark.django_db
def test_authentication_missing_credentials_is_401_with_challenge():
    # given no credentials, when calling, then 401 (not 403) with WWW-Authenticate
    response = get_me()
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="api"'
    assert set(response.json()["error"]) == {"code", "message", "details"}


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()])
def test_basic_malformed_header_is_401(header):
    # given a malformed Basic header, when calling, then 401
    response = get_me(header)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response


@pytest.mark.django_db
def test_basic_cache_skips_the_hasher_on_the_second_call(member):
    # given one verified Basic call
    with count_hashing() as hashing:
        assert get_me(basic("alice", PASSWORD)).status_code == 200
        assert hashing.call_count == 1
        # when the same credential is sent again, then no password hash is computed
        assert get_me(basic("alice", PASSWORD)).status_code == 200
        assert hashing.call_count == 1


@pytest.mark.django_db
def test_basic_cache_never_stores_the_password(member):
    # given a verified Basic call
    assert get_me(basic("alice", PASSWORD)).status_code == 200
    # when looking at everything in the cache, then the password is in no key and no value
    entries = cache_dump()
    assert entries, "the credential should have been remembered"
    for key, value in entries:
        assert PASSWORD.encode() not in key
        assert PASSWORD.encode() not in value


@pytest.mark.django_db
def test_basic_cache_forgets_a_changed_password(member):
    # given a remembered credential
    user = member[1]
    assert get_me(basic("alice", PASSWORD)).status_code == 200
    # when the password changes, then the old one fails at once and the new one works
    user.set_password("another-long-passphrase")
    user.save()
    assert get_me(basic("alice", PASSWORD)).status_code == 401
    assert get_me(basic("alice", "another-long-passphrase")).status_code == 200


@pytest.mark.django_db
def test_basic_cache_forgets_a_deactivated_user(member):
    # given a remembered credential, when the user is deactivated, then 401
    assert get_me(basic("alice", PASSWORD)).status_code == 200
    get_user_model().objects.filter(pk=member[1].pk).update(is_active=False)
    assert get_me(basic("alice", PASSWORD)).status_code == 401


@pytest.mark.django_db
def test_basic_cache_outage_falls_back_to_the_hasher(member):
    # given a cache that raises, when calling with Basic, then authentication still works
    with mock.patch("accounts.credentials.cache") as broken:
        broken.get.side_effect = ConnectionError("down")
        broken.set.side_effect = ConnectionError("down")
        assert get_me(basic("alice", PASSWORD)).status_code == 200


@pytest.mark.django_db
def test_authentication_user_without_membership_is_403_no_account():
    # given a user with no account (as createsuperuser makes them)
    user = get_user_model().objects.create_user(username="loner", password=PASSWORD)
    client = APIClient()
    client.force_login(user)
    # when calling with the right password over Basic, or with a session
    responses = [get_me(basic("loner", PASSWORD)), client.get(ME)]
    # then 403 no_account, not a claim that the password is wrong
    for response in responses:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "no_account"
        assert "does not belong to an account" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_authentication_user_without_membership_and_a_wrong_password_is_401():
    # given a user with no account
    get_user_model().objects.create_user(username="loner", password=PASSWORD)
    # when calling with a wrong password, then the usual 401: nothing is said about the account
    response = get_me(basic("loner", "wrong password"))
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"


@pytest.mark.django_db
def test_bearer_accepts_a_live_token_and_records_use(member):
    # given a fresh token
    token, raw = services.api_token_create(user=member[1])
    # when used, then 200 and last_used_at is set
    response = get_me(f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


@pytest.mark.django_db
def test_bearer_updates_last_used_at_at_most_once_a_minute(member):
    # given a token used a moment ago
    token, raw = services.api_token_create(user=member[1])
    get_me(f"Bearer {raw}")
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    # when used again at once, then last_used_at does not move
    get_me(f"Bearer {raw}")
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    # when last use was two minutes ago, then it moves
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    get_me(f"Bearer {raw}")
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


@pytest.mark.django_db
def test_bearer_rejects_an_expired_token(member):
    # given an expired token, when used, then 401 invalid_token with WWW-Authenticate
    token, raw = services.api_token_create(user=member[1])
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = get_me(f"Bearer {raw}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert "WWW-Authenticate" in response


@pytest.mark.django_db
def test_bearer_rejects_a_revoked_token(member):
    # given a revoked token, when used, then 401
    token, raw = services.api_token_create(user=member[1])
    services.api_token_revoke(token=token)
    assert get_me(f"Bearer {raw}").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer nope", "Bearer", "Bearer a b", "Bearer " + "x" * 1000])
def test_bearer_rejects_unknown_or_malformed_tokens(member, header):
    # given a token that was never issued, when used, then 401
    assert get_me(header).status_code == 401


@pytest.mark.django_db
def test_bearer_rejects_a_token_of_a_user_moved_to_another_account(member, other_member):
    # given alice's token, when alice is moved to another account, then the old token stops working
    _, raw = services.api_token_create(user=member[1])
    Membership.objects.filter(user=member[1]).update(account=other_member[0])
    assert get_me(f"Bearer {raw}").status_code == 401


@pytest.mark.django_db
def test_bearer_rejects_an_inactive_user(member):
    # given a token of a deactivated user, when used, then 401
    _, raw = services.api_token_create(user=member[1])
    get_user_model().objects.filter(pk=member[1].pk).update(is_active=False)
    assert get_me(f"Bearer {raw}").status_code == 401


@pytest.mark.django_db
def test_session_authenticates_reads_and_enforces_csrf_on_writes(member):
    # given a logged-in browser session with CSRF checks on
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(member[1])
    # when reading, then 200
    assert client.get(ME).status_code == 200
    # when writing without a CSRF token, then 403
    response = client.put("/api/v1/accounts/me/secrets/K", {"value": "v"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.django_db
def test_authentication_each_account_sees_itself():
    # given two members, when each calls with Basic, then each gets their own account
    first, _ = make_member("ann")
    second, _ = make_member("ben")
    assert get_me(basic("ann", PASSWORD)).json()["id"] == str(first.id)
    assert get_me(basic("ben", PASSWORD)).json()["id"] == str(second.id)


@pytest.mark.django_db
def test_basic_with_a_nul_in_the_username_is_401_not_500(member):
    # given a username PostgreSQL could not even compare, when calling, then a plain 401
    assert get_me(basic("ali\x00ce", PASSWORD)).status_code == 401
