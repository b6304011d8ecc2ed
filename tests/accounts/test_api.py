"""REST API of accounts: signup, login, me, secrets CRUD, tenant isolation and the error envelope."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Secret
from accounts.selectors import secrets_decrypted
from tests.conftest import PASSWORD
from tests.helpers import assert_envelope

SECRETS = "/api/v1/accounts/{}/secrets"
SECRET = "/api/v1/accounts/{}/secrets/{}"


@pytest.mark.django_db
def test_signup_creates_an_account_when_enabled(settings):
    # given signup is on
    settings.FLOWRUNNER_ALLOW_SIGNUP = True
    # when an anonymous client signs up
    response = APIClient().post("/api/v1/accounts", {"username": "bob", "password": PASSWORD}, format="json")
    # then 201 with the account id, and the password is nowhere in the answer
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "created_at"}
    assert body["username"] == "bob"
    uuid.UUID(body["id"])
    assert PASSWORD not in response.content.decode()


@pytest.mark.django_db
def test_signup_is_forbidden_when_disabled(settings):
    # given signup is off, when someone signs up, then 403 signup_disabled
    settings.FLOWRUNNER_ALLOW_SIGNUP = False
    response = APIClient().post("/api/v1/accounts", {"username": "bob", "password": PASSWORD}, format="json")
    assert_envelope(response, 403, "signup_disabled")


@pytest.mark.django_db
def test_signup_with_a_taken_username_is_409(member):
    # given alice exists, when alice signs up again, then 409
    response = APIClient().post(
        "/api/v1/accounts", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert_envelope(response, 409, "username_taken")


@pytest.mark.django_db
def test_signup_with_a_weak_password_is_400():
    # given a common password, when signing up, then 400 listing the password problem
    response = APIClient().post(
        "/api/v1/accounts", {"username": "bob", "password": "password"}, format="json"
    )
    error = assert_envelope(response, 400, "validation_error")
    assert [item["path"] for item in error["details"]] == ["password"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"username": "bob", "password": PASSWORD, "admin": True},
        {"username": "bob"},
        {"username": 7, "password": PASSWORD},
        ["bob", PASSWORD],
    ],
    ids=["unknown-field", "missing-password", "non-string", "not-an-object"],
)
def test_signup_rejects_malformed_bodies(body):
    # given a malformed body, when signing up, then 400 validation_error
    response = APIClient().post("/api/v1/accounts", body, format="json")
    assert_envelope(response, 400, "validation_error")


@pytest.mark.django_db
def test_login_returns_a_working_token(member):
    # given alice's credentials, when she logs in
    response = APIClient().post("/api/v1/login", {"username": "alice", "password": PASSWORD}, format="json")
    # then 200 with a token, her account and an expiry in the future
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "account_id", "username", "expires_at"}
    assert body["account_id"] == str(member[0].id) and body["username"] == "alice"
    assert timezone.datetime.fromisoformat(body["expires_at"]) > timezone.now() + timedelta(days=1)
    # and the token authenticates
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert client.get("/api/v1/accounts/me").status_code == 200


@pytest.mark.django_db
def test_login_with_bad_credentials_is_401(member):
    # given a wrong password or an unknown user, when logging in, then 401 with a challenge
    for username, password in [("alice", "wrong"), ("nobody", PASSWORD)]:
        response = APIClient().post(
            "/api/v1/login", {"username": username, "password": password}, format="json"
        )
        assert_envelope(response, 401, "invalid_credentials")
        assert "WWW-Authenticate" in response


@pytest.mark.django_db
def test_login_of_a_user_without_an_account_is_403_no_account(django_user_model):
    # given a user made without an account, as createsuperuser makes them
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    # when it logs in with the right password
    response = APIClient().post("/api/v1/login", {"username": "root", "password": PASSWORD}, format="json")
    # then 403 no_account, saying how to fix it, and no token
    error = assert_envelope(response, 403, "no_account")
    assert "Memberships" in error["message"] and "createaccount" in error["message"]
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_login_ignores_a_stale_bearer_header(member):
    # given a client still sending an expired token, when it logs in, then the login succeeds
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer fr_stale")
    response = client.post("/api/v1/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200


@pytest.mark.django_db
def test_me_returns_the_callers_account(api, member):
    # given alice, when she asks for /accounts/me, then her account
    response = api.get("/api/v1/accounts/me")
    assert response.status_code == 200
    assert response.json() == {
        "id": str(member[0].id),
        "name": "alice",
        "username": "alice",
        "created_at": response.json()["created_at"],
        "callback_secret": response.json()["callback_secret"],
    }


@pytest.mark.django_db
def test_secrets_crud_through_me_and_the_account_id(api, member):
    seen = []
    # given an empty account, when a secret is created with POST, then 201
    response = api.post(SECRET.format("me", "API_KEY"), {"value": "v1-top-secret"}, format="json")
    seen.append(response)
    assert response.status_code == 201
    assert set(response.json()) == {"key", "created_at", "updated_at"}
    # when POSTed again, then 200 (update)
    seen.append(api.post(SECRET.format("me", "API_KEY"), {"value": "v2-top-secret"}, format="json"))
    assert seen[-1].status_code == 200
    # when PUT on a new key with the account id, then 201; PUT again then 200
    seen.append(api.put(SECRET.format(member[0].id, "OTHER"), {"value": "v3-top-secret"}, format="json"))
    assert seen[-1].status_code == 201
    seen.append(api.put(SECRET.format(member[0].id, "OTHER"), {"value": "v4-top-secret"}, format="json"))
    assert seen[-1].status_code == 200
    # when listed, then keys and dates only, sorted
    seen.append(api.get(SECRETS.format("me")))
    body = seen[-1].json()
    assert body["total"] == 2
    assert [item["key"] for item in body["secrets"]] == ["API_KEY", "OTHER"]
    assert all(set(item) == {"key", "created_at", "updated_at"} for item in body["secrets"])
    # when deleted, then 204; deleting again is 404
    seen.append(api.delete(SECRET.format("me", "API_KEY")))
    assert seen[-1].status_code == 204
    seen.append(api.delete(SECRET.format("me", "API_KEY")))
    assert_envelope(seen[-1], 404, "not_found")
    assert list(Secret.objects.values_list("key", flat=True)) == ["OTHER"]
    # then no response ever carried a value or a ciphertext
    ciphertext = Secret.objects.get().ciphertext
    for response in seen:
        text = response.content.decode()
        assert "top-secret" not in text and ciphertext not in text


@pytest.mark.django_db
def test_secrets_of_another_account_answer_404(api, other_api, other_member):
    # given mallory has a secret
    other_api.put(SECRET.format("me", "THEIRS"), {"value": "x"}, format="json")
    other_id = other_member[0].id
    # when alice names mallory's account anywhere, then 404 and nothing changes
    assert_envelope(api.get(SECRETS.format(other_id)), 404)
    assert_envelope(api.put(SECRET.format(other_id, "THEIRS"), {"value": "pwned"}, format="json"), 404)
    assert_envelope(api.post(SECRET.format(other_id, "NEW"), {"value": "pwned"}, format="json"), 404)
    assert_envelope(api.delete(SECRET.format(other_id, "THEIRS")), 404)
    assert Secret.objects.filter(account=other_member[0]).count() == 1
    # and alice's own list does not show mallory's secret
    assert api.get(SECRETS.format("me")).json() == {"secrets": [], "total": 0}


@pytest.mark.django_db
@pytest.mark.parametrize("ref", [uuid.uuid4(), "not-a-uuid"])
def test_secrets_of_a_nonexistent_account_answer_404(api, ref):
    # given an id that names no account, when listing, then 404
    assert_envelope(api.get(SECRETS.format(ref)), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["1abc", "bad-key", "a.b", "x" * 129])
def test_secret_with_an_invalid_key_is_400(api, key):
    # given an invalid key, when set or deleted, then 400 validation_error
    assert_envelope(api.put(SECRET.format("me", key), {"value": "v"}, format="json"), 400, "validation_error")
    assert_envelope(api.delete(SECRET.format("me", key)), 400, "validation_error")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [{}, {"value": 42}, {"value": None}, {"value": "v", "extra": 1}, "just a string"],
    ids=["missing", "number", "null", "unknown-field", "not-an-object"],
)
def test_secret_with_a_bad_body_is_400(api, body):
    # given a body that is not {value: string}, when set, then 400 and nothing stored
    assert_envelope(api.put(SECRET.format("me", "K"), body, format="json"), 400, "validation_error")
    assert not Secret.objects.exists()


@pytest.mark.django_db
def test_secret_value_keeps_whitespace_and_may_be_empty(api, member):
    # given values with surrounding whitespace and an empty one, when set, then stored exactly
    api.put(SECRET.format("me", "PADDED"), {"value": "  spaced\n"}, format="json")
    api.put(SECRET.format("me", "EMPTY"), {"value": ""}, format="json")
    assert secrets_decrypted(account=member[0]) == {"PADDED": "  spaced\n", "EMPTY": ""}


@pytest.mark.django_db
def test_secrets_require_authentication(member):
    # given no credentials, when listing, then 401 with a challenge
    response = APIClient().get(SECRETS.format("me"))
    assert_envelope(response, 401, "not_authenticated")
    assert "WWW-Authenticate" in response


@pytest.mark.django_db
def test_accounts_wrong_method_is_405_in_the_envelope(api):
    # given /accounts/me, when DELETEd, then 405 in the envelope
    assert_envelope(api.delete("/api/v1/accounts/me"), 405, "method_not_allowed")


@pytest.mark.django_db
def test_accounts_paths_have_no_trailing_slash(api):
    # given a trailing slash, when requested, then 404, not a redirect
    assert api.get("/api/v1/accounts/me/").status_code == 404
