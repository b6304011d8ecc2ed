"""Services and selectors of accounts: signup, tokens, secrets; and the createaccount command."""

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import selectors, services, vault
from accounts.models import Account, ApiToken, Secret
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from tests.conftest import PASSWORD


@pytest.mark.django_db
def test_account_signup_creates_user_account_and_membership():
    # given / when a signup
    account, user = services.account_signup(username="bob", password=PASSWORD)
    # then the user belongs to the new account, named after the user
    assert user.check_password(PASSWORD)
    assert selectors.account_for_user(user) == account
    assert account.name == "bob"


@pytest.mark.django_db
def test_account_signup_refuses_a_taken_username_case_insensitively(member):
    # given alice exists, when ALICE signs up, then 409 username_taken
    with pytest.raises(Conflict) as caught:
        services.account_signup(username="ALICE", password=PASSWORD)
    assert caught.value.code == "username_taken"
    assert Account.objects.count() == 1


@pytest.mark.django_db
def test_account_signup_lists_every_problem():
    # given an invalid username and a common short password, when signing up
    with pytest.raises(ValidationFailed) as caught:
        services.account_signup(username="bad name!", password="abc")
    # then both fields are reported and nothing is created
    paths = {item["path"] for item in caught.value.details}
    assert paths == {"username", "password"}
    assert all("abc" not in item["message"] for item in caught.value.details)
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_api_token_create_stores_only_the_digest(member):
    # given a member, when a token is issued
    token, raw = services.api_token_create(user=member[1])
    # then the raw token is not stored, its SHA-256 is, and it expires after the configured TTL
    assert raw.startswith("fr_") and len(raw) > 40
    assert token.token_hash == services.token_digest(raw)
    assert raw not in {token.prefix, token.token_hash, token.name}
    assert raw.startswith(token.prefix)
    assert token.account == member[0]
    assert token.expires_at > timezone.now() + timedelta(days=1)


@pytest.mark.django_db
def test_api_token_create_without_ttl_never_expires(member):
    # given ttl=0, when a token is issued, then it has no expiry
    token, _ = services.api_token_create(user=member[1], name="ci", ttl=0)
    assert token.expires_at is None and token.name == "ci"


@pytest.mark.django_db
def test_api_token_revoke_is_idempotent(member):
    # given a revoked token
    token, _ = services.api_token_create(user=member[1])
    first = services.api_token_revoke(token=token).revoked_at
    # when revoked again, then the first revocation time stays
    assert services.api_token_revoke(token=token).revoked_at == first
    assert ApiToken.objects.get(pk=token.pk).revoked_at == first


@pytest.mark.django_db
def test_secret_set_creates_then_updates(member):
    account = member[0]
    # given a new key, when set, then created with a ciphertext that decrypts to the value
    secret, created = services.secret_set(account=account, key="API_KEY", value="one")
    assert created and vault.decrypt(secret.ciphertext) == "one"
    # when set again, then updated in place
    again, created = services.secret_set(account=account, key="API_KEY", value="two")
    assert not created and again.pk == secret.pk
    assert vault.decrypt(Secret.objects.get(pk=secret.pk).ciphertext) == "two"
    assert again.updated_at >= secret.updated_at


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["1abc", "bad-key", "", "a b", "é", "k" * 129])
def test_secret_set_rejects_invalid_keys(member, key):
    # given an invalid key, when set, then 400 and nothing stored
    with pytest.raises(ValidationFailed):
        services.secret_set(account=member[0], key=key, value="v")
    assert not Secret.objects.exists()


@pytest.mark.django_db
def test_secret_set_errors_never_echo_the_value(member):
    # given a value that is too long, when set, then the error does not contain it
    value = "S" * (services.SECRET_VALUE_MAX_CHARS + 1)
    with pytest.raises(ValidationFailed) as caught:
        services.secret_set(account=member[0], key="BIG", value=value)
    assert "SSSS" not in caught.value.message + str(caught.value.details)


@pytest.mark.django_db
def test_secret_delete_removes_only_that_account_key(member, other_member):
    # given the same key in two accounts
    services.secret_set(account=member[0], key="K", value="mine")
    services.secret_set(account=other_member[0], key="K", value="theirs")
    # when one is deleted, then the other stays; deleting again is 404
    services.secret_delete(account=member[0], key="K")
    assert selectors.secrets_decrypted(account=other_member[0]) == {"K": "theirs"}
    with pytest.raises(NotFound):
        services.secret_delete(account=member[0], key="K")


@pytest.mark.django_db
def test_secrets_decrypted_accepts_an_account_or_its_id(member, other_member):
    # given secrets in two accounts
    services.secret_set(account=member[0], key="A", value="1")
    services.secret_set(account=member[0], key="B", value="2")
    services.secret_set(account=other_member[0], key="C", value="3")
    # when read by account and by id, then only that account's clear values
    assert selectors.secrets_decrypted(account=member[0]) == {"A": "1", "B": "2"}
    assert selectors.secrets_decrypted(account=str(member[0].id)) == {"A": "1", "B": "2"}


@pytest.mark.django_db
def test_secret_values_are_distinct_nonempty_longest_first(member):
    # given values where one contains another, a duplicate and an empty one
    for key, value in [("A", "abc"), ("B", "abcdef"), ("C", "abc"), ("D", "")]:
        services.secret_set(account=member[0], key=key, value=value)
    # when listed for redaction, then longest first, no duplicates, no empty string
    assert selectors.secret_values(account=member[0]) == ["abcdef", "abc"]


@pytest.mark.django_db
def test_account_by_ref_hides_other_accounts(member, other_member):
    # given alice, when she names mallory's account or garbage, then 404; `me` and her id resolve
    user = member[1]
    assert selectors.account_by_ref(user=user, ref="me") == member[0]
    assert selectors.account_by_ref(user=user, ref=str(member[0].id)) == member[0]
    for ref in [str(other_member[0].id), "not-a-uuid", "00000000-0000-0000-0000-000000000000"]:
        with pytest.raises(NotFound):
            selectors.account_by_ref(user=user, ref=ref)


@pytest.mark.django_db
def test_account_for_user_without_membership_is_403():
    # given a user with no account, when resolved, then no_account
    user = get_user_model().objects.create_user(username="loner", password=PASSWORD)
    with pytest.raises(Forbidden) as caught:
        selectors.account_for_user(user)
    assert caught.value.code == "no_account"


@pytest.mark.django_db
def test_createaccount_command_prints_the_account_id():
    # given / when the command runs with a password
    out = io.StringIO()
    call_command("createaccount", "carol", "--password", PASSWORD, "--name", "Carol Inc", stdout=out)
    # then the printed id is the new account's
    account = Account.objects.get(id=out.getvalue().strip())
    assert account.name == "Carol Inc"
    assert account.memberships.get().user.username == "carol"


@pytest.mark.django_db
def test_createaccount_command_reports_a_weak_password():
    # given a common password, when the command runs, then CommandError naming the field
    with pytest.raises(CommandError, match="password"):
        call_command("createaccount", "dave", "--password", "password", stdout=io.StringIO())


@pytest.mark.django_db
def test_createaccount_command_without_password_or_terminal_fails(monkeypatch):
    # given no --password and a stdin that is not a terminal, when the command runs, then CommandError
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="password"):
        call_command("createaccount", "erin", stdout=io.StringIO())
    assert not Account.objects.exists()


@pytest.mark.django_db
def test_account_create_makes_an_account_without_members():
    # given / when an account is created on its own
    account = services.account_create(name="throwaway")
    # then it exists with that name and nobody belongs to it
    assert Account.objects.get(pk=account.pk).name == "throwaway"
    assert not account.memberships.exists()


def test_user_by_username_finds_exactly_that_user(member):
    # given alice, when users are looked up by name, then only the exact name finds her
    _, user = member
    assert selectors.user_by_username(user.get_username()) == user
    assert selectors.user_by_username("nobody-by-that-name") is None
