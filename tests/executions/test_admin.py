"""Django admin of executions (read-only, Cancel and Re-run actions), store entries, and the flows Run action."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.services import secret_set
from executions.models import Execution, ExecutionStatus
from tests.conftest import make_member
from tests.dashboard.factories import fail, make_execution, make_flow
from workers.models import StoreEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

LIST = "/admin/executions/execution/"


def staff_of(account_user, *perms: str) -> Client:
    """A staff (not superuser) member of an account, with the given `app.codename` permissions."""
    _, user = account_user
    user.is_staff = True
    user.save()
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, url: str, action: str, *objects) -> str:
    response = client.post(url, {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_list_and_detail_render_with_node_runs_and_events(admin_client, member):
    # given a failed execution
    execution = fail(make_execution(*member), node_error="TypeError: boom")
    # when the admin opens the list (filtered and searched) and the detail
    listing = admin_client.get(LIST)
    filtered = admin_client.get(LIST, {"status__exact": "failed", "q": str(execution.id)[:8]})
    detail = admin_client.get(f"{LIST}{execution.pk}/change/")
    # then both render; the detail shows its node runs, events in seq order and the document
    assert listing.status_code == 200 and str(execution.id) in listing.content.decode()
    assert str(execution.id) in filtered.content.decode()
    page = detail.content.decode()
    assert detail.status_code == 200
    assert "TypeError: boom" in page and "w1@host" in page and "&quot;name&quot;: &quot;ada&quot;" in page
    seqs = [int(s) for s in re.findall(r'<td class="field-seq">\s*<p>(\d+)</p>', page)]
    assert seqs == sorted(seqs) and len(seqs) == execution.events.count()


def test_admin_is_read_only(admin_client, member):
    # given an execution
    execution = make_execution(*member)
    # when the admin tries to add, change or delete one
    add = admin_client.get(f"{LIST}add/")
    change = admin_client.post(f"{LIST}{execution.pk}/change/", {"status": "completed"})
    delete = admin_client.get(f"{LIST}{execution.pk}/delete/")
    # then nothing is possible and nothing changed
    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED
    assert 'name="status"' not in admin_client.get(f"{LIST}{execution.pk}/change/").content.decode()


def test_document_is_redacted(admin_client, member):
    # given an execution whose input holds a secret value of its account
    account, user = member
    secret_set(account=account, key="TOKEN", value="s3cr3t-value")
    execution = make_execution(account, user, input={"name": "s3cr3t-value"})
    # when the admin opens it, then the value is masked
    page = admin_client.get(f"{LIST}{execution.pk}/change/").content.decode()
    assert "s3cr3t-value" not in page and "***" in page


def test_cancel_action_cancels_active_executions(admin_client, member):
    # given a queued execution and a failed one
    queued = make_execution(*member)
    failed = fail(make_execution(*member))
    # when both are canceled from the list
    page = act(admin_client, LIST, "cancel", queued, failed)
    # then the queued one is canceled with its node run; the failed one is reported as already ended
    queued.refresh_from_db()
    assert queued.status == ExecutionStatus.CANCELED
    assert queued.node_runs.get().status == "canceled"
    assert f"Canceled 1: {queued.id}" in page and "1 execution(s) had already ended" in page


def test_rerun_action_starts_a_linked_execution_from_the_failure(admin_client, member):
    # given a failed execution and a queued one
    failed = fail(make_execution(*member))
    queued = make_execution(*member)
    # when both are re-run from the list
    page = act(admin_client, LIST, "rerun", failed, queued)
    # then a new execution, linked to the failed one, starts at the failed node; the queued one is refused
    new = Execution.objects.get(retry_of=failed)
    assert new.status == ExecutionStatus.QUEUED and new.node_runs.get().node_id == "greet"
    assert f"{failed.id} → {new.id}" in page
    assert f"Not re-run: {queued.id}" in page
    assert not Execution.objects.filter(retry_of=queued).exists()


def test_staff_see_only_their_accounts_executions(member, other_member):
    # given a staff member allowed to view executions, and executions of two accounts
    mine = make_execution(*member)
    theirs = make_execution(*other_member)
    client = staff_of(member, "executions.view_execution")
    # when they open the list and the other account's detail
    listing = client.get(LIST).content.decode()
    # then they see only their own, and the other one does not exist for them
    assert str(mine.id) in listing and str(theirs.id) not in listing
    assert theirs.flow_id not in listing  # nor in the flow filter
    assert client.get(f"{LIST}{theirs.pk}/change/").status_code == 302  # "does not exist" → redirect
    # and without the change permission the actions are not offered
    assert 'value="cancel"' not in listing
    operator_member = make_member("op")
    make_execution(*operator_member)
    operator = staff_of(operator_member, "executions.view_execution", "executions.change_execution")
    assert 'value="cancel"' in operator.get(LIST).content.decode()


def test_flow_run_action_starts_executions_with_empty_input(admin_client, member):
    # given two flows, one deleted
    account, user = member
    live, deleted = make_flow(account, user), make_flow(account, user)
    from flows.services import flow_delete

    flow_delete(flow=deleted)
    # when the admin runs both from the flows list
    page = act(admin_client, "/admin/flows/flow/", "run", live, deleted)
    # then the live one has a queued execution with empty input, reported by id; the deleted one is refused
    execution = Execution.objects.get(flow=live)
    assert execution.input == {} and execution.status == ExecutionStatus.QUEUED
    assert f"{live.id} → {execution.id}" in page
    assert f"Not started: {deleted.id}" in page


def test_store_entries_are_read_only_and_scoped(admin_client, member, other_member):
    # given store entries of two accounts
    mine = StoreEntry.objects.create(account=member[0], key="counter", value={"n": 3})
    theirs = StoreEntry.objects.create(account=other_member[0], key="their-key", value=1)
    # when a superuser and a staff member look
    url = "/admin/workers/storeentry/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(f"{url}{mine.pk}/change/").status_code == 200
    assert admin_client.get(f"{url}add/").status_code == 403
    staff = staff_of(member, "workers.view_storeentry")
    listing = staff.get(url).content.decode()
    # then staff see only their account's entries, and nobody edits them
    assert "counter" in listing and "their-key" not in listing
    assert staff.post(f"{url}{mine.pk}/change/", {"key": "x"}).status_code == 403
    assert theirs.key == "their-key"
