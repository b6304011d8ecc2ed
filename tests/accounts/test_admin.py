"""Admin: secret values are write-only (encrypted by the service, never shown); tokens revocable, unseen; staff who
are not superusers reach only their own account's objects in every admin, and no users or groups."""

from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import selectors, services
from accounts.models import ApiToken, Membership, Secret
from executions.models import ExecutionEvent, NodeRun
from tests.dashboard.factories import make_execution, make_flow
from workers.models import StoreEntry

VALUE = "admin-typed-s3cret-value"


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


# --- tenancy: staff of account A (every permission, not a superuser) against account B's objects -------------

ADMINS = sorted(model._meta.label for model in admin.site._registry)


@pytest.fixture
def tenants(member, other_member, monkeypatch):
    """Staff of account A holding every permission there is (not a superuser), B's object of every registered
    admin model, and a superuser client."""
    monkeypatch.setattr("executions.dispatch.send_now", lambda *args, **kwargs: None)
    (account, staff), (b_account, b_user) = member, other_member
    staff.is_staff = True
    staff.save()
    staff.user_permissions.set(Permission.objects.all())
    flow = make_flow(b_account, b_user)
    b = {
        "accounts.Account": b_account,
        "accounts.Membership": b_user.membership,
        "accounts.ApiToken": services.api_token_create(user=b_user)[0],
        "accounts.Secret": services.secret_set(account=b_account, key="B_SECRET", value="b-value")[0],
        "auth.User": b_user,
        "auth.Group": Group.objects.create(name="b-group"),
        "flows.Flow": flow,
        "flows.FlowVersion": flow.current_version,
        "executions.Execution": make_execution(b_account, b_user, flow),
        "workers.StoreEntry": StoreEntry.objects.create(account=b_account, key="b-key", value={"n": 1}),
        **_trigger_objects(b_account, b_user, flow),
    }
    client, root = Client(), Client()
    client.force_login(staff)
    root.force_login(
        get_user_model().objects.create_superuser("root", "root@example.com", "root-passphrase-1")
    )
    return SimpleNamespace(client=client, root=root, staff=staff, account=account, b_account=b_account, b=b)


def _trigger_objects(account, user, flow) -> dict:
    from django_celery_beat.models import ClockedSchedule, SolarSchedule

    from triggers.hooks import trigger_create
    from triggers.schedules import schedule_create

    every = schedule_create(account=account, flow=flow, user=user, interval="5s")
    daily = schedule_create(account=account, flow=flow, user=user, cron="0 9 * * *")
    return {
        "triggers.Schedule": every,
        "triggers.Trigger": trigger_create(account=account, flow=flow, user=user)[0],
        "django_celery_beat.PeriodicTask": every.periodic_task,
        "django_celery_beat.IntervalSchedule": every.periodic_task.interval,
        "django_celery_beat.CrontabSchedule": daily.periodic_task.crontab,
        "django_celery_beat.SolarSchedule": SolarSchedule.objects.create(
            event="sunrise", latitude=0, longitude=0
        ),
        "django_celery_beat.ClockedSchedule": ClockedSchedule.objects.create(clocked_time=timezone.now()),
    }


def _url(obj, view: str = "changelist") -> str:
    meta = obj._meta
    args = [] if view == "changelist" else [obj.pk]
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def _tables() -> dict[str, list[dict]]:
    """Every row of every admin-managed table (and their children), to prove nothing was written."""
    models = [*admin.site._registry, NodeRun, ExecutionEvent]
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in models}


def _shown(response, obj) -> bool:
    return response.context["cl"].queryset.filter(pk=obj.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("label", ADMINS)
def test_admin_staff_of_one_account_reach_no_object_of_another(tenants, label):
    # given B's object of this model, which a superuser sees in the list
    target = tenants.b[label]
    assert _shown(tenants.root.get(_url(target)), target)
    before = _tables()
    client = tenants.client
    # when staff of A open the list / then it is refused or does not hold B's object
    listing = client.get(_url(target))
    assert listing.status_code in (200, 403)
    actions = []
    if listing.status_code == 200:
        assert not _shown(listing, target)
        action_form = listing.context["action_form"]  # None when the user may run no action here
        actions = [name for name, _ in action_form.fields["action"].choices if name] if action_form else []
    # when they open B's object's change, history and delete pages, post to them, and run every action on it
    pages = [client.get(_url(target, view)) for view in ("change", "history", "delete")]
    pages += [
        client.post(
            _url(target, "change"), {"name": "taken", "value": "overwritten", "account": tenants.account.pk}
        ),
        client.post(_url(target, "delete"), {"post": "yes"}),
    ]
    for action in actions:
        client.post(_url(target), {"action": action, "_selected_action": [str(target.pk)], "post": "yes"})
    # then each page was refused or treated the object as missing (Django redirects to the index), and nothing
    # anywhere changed
    for page in pages:
        assert page.status_code == 403 or (page.status_code, page["Location"]) == (
            302,
            reverse("admin:index"),
        )
    assert _tables() == before


@pytest.mark.django_db
def test_admin_staff_overwrite_only_their_own_accounts_secrets(tenants):
    # given a secret in each account
    own, _ = services.secret_set(account=tenants.account, key="OWN", value="own-value")
    theirs = tenants.b["accounts.Secret"]
    # when staff of A post a new value to both
    for secret in (own, theirs):
        tenants.client.post(_url(secret, "change"), {"value": "overwritten"})
    # then only their own changed
    assert selectors.secrets_decrypted(account=tenants.account) == {"OWN": "overwritten"}
    assert selectors.secrets_decrypted(account=tenants.b_account) == {"B_SECRET": "b-value"}


@pytest.mark.django_db
def test_admin_staff_add_secrets_to_their_own_account_whatever_account_is_posted(tenants):
    # given the add form, which asks no account of staff
    page = tenants.client.get("/admin/accounts/secret/add/").content.decode()
    assert 'name="account"' not in page
    # when a secret is posted naming account B
    data = {"account": tenants.b_account.pk, "key": "PLANTED", "value": "v"}
    assert tenants.client.post("/admin/accounts/secret/add/", data).status_code == 302
    # then it was stored in A, and B has none
    assert selectors.secrets_decrypted(account=tenants.account) == {"PLANTED": "v"}
    assert "PLANTED" not in selectors.secrets_decrypted(account=tenants.b_account)


@pytest.mark.django_db
def test_admin_staff_revoke_only_their_own_accounts_tokens(tenants):
    # given a token in each account
    own, _ = services.api_token_create(user=tenants.staff)
    theirs = tenants.b["accounts.ApiToken"]
    # when staff of A run the revoke action on both
    tenants.client.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [str(own.pk), str(theirs.pk)]}
    )
    # then only their own is revoked
    assert ApiToken.objects.get(pk=own.pk).revoked_at is not None
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None


@pytest.mark.django_db
def test_admin_staff_cannot_join_another_account(tenants):
    # given staff of A, whose own account page (and its members) they may see
    own_page = tenants.client.get(_url(tenants.account, "change"))
    assert own_page.status_code == 200 and tenants.staff.username in own_page.content.decode()
    membership = tenants.staff.membership
    # when they add themselves to B, move their membership to B, or add a member through A's page
    attempts = [
        tenants.client.post(
            "/admin/accounts/membership/add/", {"user": tenants.staff.pk, "account": tenants.b_account.pk}
        ),
        tenants.client.post(
            _url(membership, "change"), {"user": tenants.staff.pk, "account": tenants.b_account.pk}
        ),
        tenants.client.post(
            _url(tenants.account, "change"),
            {
                "name": tenants.account.name,
                "memberships-TOTAL_FORMS": "1",
                "memberships-INITIAL_FORMS": "0",
                "memberships-0-user": str(tenants.b["auth.User"].pk),
            },
        ),
    ]
    # then the membership pages refuse, the account page changes no membership, and nothing moved
    assert [a.status_code for a in attempts[:2]] == [403, 403]
    assert Membership.objects.get(pk=membership.pk).account_id == tenants.account.pk
    assert tenants.b["auth.User"].membership.account_id == tenants.b_account.pk
    assert Membership.objects.filter(account=tenants.account).count() == 1


@pytest.mark.django_db
def test_admin_staff_cannot_manage_users_or_make_themselves_superuser(tenants):
    # given staff holding every auth permission
    staff = tenants.staff
    # when they open the users and groups, or post superuser rights onto themselves
    pages = [
        tenants.client.get("/admin/auth/user/"),
        tenants.client.get("/admin/auth/group/"),
        tenants.client.get("/admin/auth/user/add/"),
        tenants.client.post(
            _url(staff, "change"),
            {"username": staff.username, "is_staff": "on", "is_superuser": "on", "is_active": "on"},
        ),
    ]
    # then all are refused and they are still no superuser
    assert [page.status_code for page in pages] == [403, 403, 403, 403]
    staff.refresh_from_db()
    assert not staff.is_superuser


@pytest.mark.django_db
def test_admin_staff_pickers_and_filters_offer_only_their_own_account(tenants):
    # given staff of A and a secret of A's, so the list has an account filter
    services.secret_set(account=tenants.account, key="OWN", value="x")
    # when the account autocomplete and the secrets list are loaded
    found = tenants.client.get(
        "/admin/autocomplete/",
        {"app_label": "accounts", "model_name": "secret", "field_name": "account", "term": ""},
    ).json()
    listing = tenants.client.get("/admin/accounts/secret/").content.decode()
    # then only A appears, never B (the name "mallory")
    assert [result["id"] for result in found["results"]] == [str(tenants.account.pk)]
    assert tenants.b_account.name not in listing and tenants.account.name in listing
