"""Django admin of flows: YAML checked with problems shown by line, saved via services, versions read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from flows.models import Flow, FlowVersion
from flows.services import flow_create

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/flows/flow/add/"

GOOD = """\
metadata:
  name: Admin flow
  description: Made in the admin
nodes:
  only:
    type: transform
    params:
      script: "return {ok: true};"
"""

# Line 7 names a node that does not exist.
BROKEN = """\
metadata:
  name: Broken
nodes:
  fetch:
    type: transform
    next:
      success: nowhere
"""


def form_data(content: str, *, account=None, name: str = "", initial_versions: int = 0) -> dict:
    data = {
        "name": name,
        "content": content,
        # Management form of the read-only versions inline: Django validates it even though nothing is edited.
        "versions-TOTAL_FORMS": str(initial_versions),
        "versions-INITIAL_FORMS": str(initial_versions),
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    if account is not None:
        data["account"] = str(account.pk)
    return data


def test_flow_admin_add_rejects_broken_flow_showing_the_line(admin_client, member):
    # given an admin and a flow whose edge on line 7 points nowhere
    account, _ = member
    # when it is submitted in the add form
    response = admin_client.post(ADD_URL, form_data(BROKEN, account=account))
    # then the form is shown again with the problem located by line, and nothing is saved
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["content"]
    assert any(error.startswith("line 7, column ") and "nowhere" in error for error in errors)
    assert "line 7, column" in response.content.decode()
    assert not Flow.objects.exists()


def test_flow_admin_add_creates_flow_with_version_one(admin_client, member):
    # given an admin who picks an account and submits a valid flow
    account, _ = member
    # when the add form is posted
    response = admin_client.post(ADD_URL, form_data(GOOD, account=account))
    # then the flow is created through the services, in that account, with version 1 by the admin
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    flow = Flow.objects.get()
    assert (flow.account, flow.name, flow.description) == (account, "Admin flow", "Made in the admin")
    assert flow.id.startswith("admin-flow-")
    assert (flow.current_version.number, flow.current_version.content) == (1, GOOD)
    assert flow.current_version.created_by.username == "root"


def test_flow_admin_change_adds_a_version(admin_client, member):
    # given a flow with one version
    account, user = member
    flow = flow_create(account=account, user=user, content=GOOD)
    url = f"/admin/flows/flow/{flow.pk}/change/"
    assert admin_client.get(url).context["adminform"].form["content"].value() == GOOD
    # when a changed text is saved in the change form
    new_text = GOOD.replace("ok: true", "ok: false")
    response = admin_client.post(url, form_data(new_text, name=flow.name, initial_versions=1))
    # then a second version becomes current and the first is kept
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    flow.refresh_from_db()
    assert (flow.current_version.number, flow.current_version.content) == (2, new_text)
    assert FlowVersion.objects.filter(flow=flow).count() == 2


def test_flow_admin_pages_render_versions_read_only(admin_client, member):
    # given a flow with a version
    account, user = member
    flow = flow_create(account=account, user=user, content=GOOD)
    version = flow.current_version
    # when the admin opens the lists and the version page
    changelist = admin_client.get("/admin/flows/flow/")
    version_page = admin_client.get(f"/admin/flows/flowversion/{version.pk}/change/")
    # then they render, the version shows its YAML, and versions cannot be added
    assert changelist.status_code == 200 and flow.name in changelist.content.decode()
    assert version_page.status_code == 200 and "Made in the admin" in version_page.content.decode()
    assert admin_client.get("/admin/flows/flowversion/add/").status_code == 403


def test_flow_admin_soft_delete_action_keeps_history(admin_client, member):
    # given a flow
    account, user = member
    flow = flow_create(account=account, user=user, content=GOOD)
    # when the soft delete action runs on it
    response = admin_client.post(
        "/admin/flows/flow/", {"action": "soft_delete", "_selected_action": [flow.pk]}, follow=True
    )
    # then it is marked deleted and its version remains
    assert response.status_code == 200
    flow.refresh_from_db()
    assert flow.deleted_at is not None
    assert FlowVersion.objects.filter(flow=flow).count() == 1


def test_flow_admin_staff_create_flows_in_their_own_account_whatever_account_is_posted(member, other_member):
    # given staff of account A allowed to add flows (not a superuser)
    account, staff = member
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="add_flow"))
    client = Client()
    client.force_login(staff)
    # when the add form is loaded and a flow is posted naming account B
    page = client.get(ADD_URL).content.decode()
    response = client.post(ADD_URL, form_data(GOOD, account=other_member[0]))
    # then the form offers no account, and the flow was created in A, none in B
    assert 'name="account"' not in page and response.status_code == 302
    assert Flow.objects.get(name="Admin flow").account == account
    assert not Flow.objects.filter(account=other_member[0]).exists()
