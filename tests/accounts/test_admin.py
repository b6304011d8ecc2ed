"""Admin: secret values are write-only (encrypted by the service, never shown); tokens revocable, unseen."""

import pytest
from django.contrib.auth import get_user_model

from accounts import selectors, services
from accounts.models import ApiToken, Secret

VALUE = "admin-typed-s3cret-value"


@pytest.fixture
def admin_client(client, db):
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "root-passphrase-1")
    client.force_login(superuser)
    return client


@pytest.mark.django_db
def test_secret_admin_add_encrypts_the_value(admin_client, member):
    # given the add form
    add_page = admin_client.get("/admin/accounts/secret/add/")
    assert add_page.status_code == 200
    assert 'type="password"' in add_page.content.decode()
    # when a secret is submitted
    response = admin_client.post(
        "/admin/accounts/secret/add/",
        {"account": member[0].pk, "key": "ADMIN_KEY", "value": VALUE},
        follow=True,
    )
    # then it is stored encrypted and readable by the service, and the value is not echoed back
    assert response.status_code == 200
    secret = Secret.objects.get(account=member[0], key="ADMIN_KEY")
    assert VALUE not in secret.ciphertext
    assert selectors.secrets_decrypted(account=member[0]) == {"ADMIN_KEY": VALUE}
    assert VALUE not in response.content.decode()


@pytest.mark.django_db
def test_secret_admin_never_renders_value_or_ciphertext(admin_client, member):
    # given a stored secret
    secret, _ = services.secret_set(account=member[0], key="SHOWN", value=VALUE)
    # when the list and change pages are rendered, then neither the value nor the ciphertext appear
    for url in ["/admin/accounts/secret/", f"/admin/accounts/secret/{secret.pk}/change/"]:
        page = admin_client.get(url)
        assert page.status_code == 200
        text = page.content.decode()
        assert "SHOWN" in text
        assert VALUE not in text and secret.ciphertext not in text


@pytest.mark.django_db
def test_secret_admin_change_with_empty_value_keeps_it(admin_client, member):
    # given a stored secret
    secret, _ = services.secret_set(account=member[0], key="KEEP", value=VALUE)
    url = f"/admin/accounts/secret/{secret.pk}/change/"
    # when saved with an empty value, then the value is unchanged
    assert admin_client.post(url, {"value": ""}).status_code == 302
    assert selectors.secrets_decrypted(account=member[0]) == {"KEEP": VALUE}
    # when saved with a new value, then it is replaced
    assert admin_client.post(url, {"value": "replaced"}).status_code == 302
    assert selectors.secrets_decrypted(account=member[0]) == {"KEEP": "replaced"}


@pytest.mark.django_db
def test_secret_admin_add_requires_a_value_and_a_valid_key(admin_client, member):
    # given a missing value or an invalid key, when submitted, then the form is redisplayed with errors
    for data in [{"key": "NOVALUE", "value": ""}, {"key": "bad-key", "value": VALUE}]:
        response = admin_client.post("/admin/accounts/secret/add/", {"account": member[0].pk, **data})
        assert response.status_code == 200
        assert VALUE not in response.content.decode()
    assert not Secret.objects.exists()


@pytest.mark.django_db
def test_api_token_admin_cannot_add_and_can_revoke(admin_client, member):
    # given an issued token
    token, raw = services.api_token_create(user=member[1])
    # when the admin looks at it, then only the digest is shown, and there is no add page
    page = admin_client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    assert token.token_hash in page and raw not in page
    assert admin_client.get("/admin/accounts/apitoken/add/").status_code == 403
    # when the revoke action runs, then the token is revoked
    response = admin_client.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [str(token.pk)]}
    )
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


@pytest.mark.django_db
def test_account_admin_shows_memberships(admin_client, member):
    # given an account with a member, when its page is rendered, then the membership inline is there
    page = admin_client.get(f"/admin/accounts/account/{member[0].pk}/change/")
    assert page.status_code == 200
    assert "memberships" in page.content.decode().lower()
    assert admin_client.get("/admin/accounts/membership/").status_code == 200
