"""Dashboard pages: sign-in, rendering for the owner, tenant isolation (404), security headers, static files."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from executions.models import Execution
from tests.conftest import PASSWORD
from tests.dashboard.factories import fail, make_execution, make_flow

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

PAGES = ["/", "/flows"]


@pytest.fixture
def owner(member) -> Client:
    client = Client()
    client.force_login(member[1])
    return client


@pytest.fixture
def flow(member):
    return make_flow(*member)


@pytest.fixture
def execution(member, flow) -> Execution:
    return make_execution(*member, flow=flow)


def html(response) -> str:
    return response.content.decode()


# --- sign-in ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/flows", "/flows/some-flow", f"/executions/{uuid.uuid4()}"])
def test_pages_require_sign_in(client, path):
    # given an anonymous visitor
    # when they open a dashboard page
    response = client.get(path)
    # then they are sent to the login page, which brings them back afterwards
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


def test_login_page_signs_in_with_username_and_password(client, member):
    # given a member of an account on the login page
    page = client.get("/login")
    assert page.status_code == 200 and 'name="password"' in html(page)
    # when they submit their username and password
    response = client.post("/login", {"username": "alice", "password": PASSWORD, "next": "/flows"})
    # then they are signed in and sent where they were going
    assert response.status_code == 302 and response["Location"] == "/flows"
    assert client.get("/flows").status_code == 200


def test_login_page_refuses_a_wrong_password_and_throttles(client, member, settings):
    # given a failure budget of two attempts
    settings.FLOWRUNNER_AUTH_FAILURE_LIMIT = 2
    # when a wrong password is tried twice
    for _ in range(2):
        response = client.post("/login", {"username": "alice", "password": "wrong-password"})
        assert response.status_code == 200 and "correct username and password" in html(response)
    # then even the right password is refused for a while, with a message instead of a sign-in
    response = client.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200 and "Too many failed sign-ins" in html(response)
    assert client.get("/").status_code == 302


def test_logout_needs_a_post_and_signs_out(owner):
    # given a signed-in member
    # when they open /logout, then they are asked to confirm; a POST signs them out
    assert owner.get("/logout").status_code == 200
    assert owner.get("/").status_code == 200
    response = owner.post("/logout")
    assert response.status_code == 302 and response["Location"] == "/login"
    assert owner.get("/").status_code == 302


def test_user_without_an_account_gets_an_explanation(client):
    # given a superuser who belongs to no account
    root = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(root)
    # when they open the dashboard
    response = client.get("/")
    # then the page explains it and points at the admin
    assert response.status_code == 403 and "does not belong to an account" in html(response)
    assert "/admin/" in html(response)


# --- pages of the owner -------------------------------------------------------------------------------------


def test_executions_list_shows_the_accounts_executions_with_filters(owner, member, other_member, flow):
    # given a failed and a queued execution of the member, and one of another account
    failed = fail(make_execution(*member, flow=flow))
    queued = make_execution(*member, flow=flow)
    theirs = make_execution(*other_member)
    # when the member opens the list, then only their own executions are there
    page = html(owner.get("/"))
    assert str(failed.id) in page and str(queued.id) in page and str(theirs.id) not in page
    assert 'id="page-config"' in page and "Greeting" in page
    # and the status and flow filters narrow it
    only_failed = html(owner.get("/", {"status": "failed"}))
    assert str(failed.id) in only_failed and str(queued.id) not in only_failed
    other_flow = make_flow(*member)
    assert str(failed.id) not in html(owner.get("/", {"flow": other_flow.id}))
    # and a nonsense filter is ignored rather than an error
    assert owner.get("/", {"status": "nonsense", "offset": "x"}).status_code == 200


def test_execution_page_draws_the_graph_with_node_states(owner, member, execution):
    # given an execution whose first node failed and ended the run
    fail(execution, node_error="TypeError: input.name is undefined")
    # when its page is opened
    response = owner.get(f"/executions/{execution.id}")
    page = html(response)
    # then the graph has every node, coloured by what happened, with edges labelled by action
    assert response.status_code == 200
    assert re.search(r'data-node="greet" data-status="failed"', page)
    assert re.search(r'data-node="shout" data-status="skipped"', page)
    assert re.search(r'data-node="report" data-status="skipped"', page)
    assert ">success</text>" in page and ">error</text>" in page
    # and the error, progress, buttons and the live config are on the page
    assert "TypeError: input.name is undefined" in page
    assert 'id="progress"' in page and "Re-run from failure" in page
    assert f'"execution_id": "{execution.id}"' in page


def test_running_execution_shows_pending_nodes_and_cancel(owner, execution):
    # given a queued execution, when its page is opened
    page = html(owner.get(f"/executions/{execution.id}"))
    # then its first node is queued, the others pending, and it can be canceled
    assert 'data-node="greet" data-status="queued"' in page
    assert 'data-node="shout" data-status="pending"' in page
    assert re.search(r'id="cancel"(?! hidden)>', page)


def test_waiting_execution_says_what_it_waits_for(owner, execution):
    # given a queued execution held back by its flow's concurrency, and a running one
    Execution.objects.filter(id=execution.id).update(waiting_reason="flow_concurrency")
    # when its page is opened / then it says it waits for a slot of its flow
    page = html(owner.get(f"/executions/{execution.id}"))
    assert '<dd id="waiting">a slot of the flow (metadata.concurrency)</dd>' in page
    Execution.objects.filter(id=execution.id).update(status="running")
    assert '<dd id="waiting">—</dd>' in html(owner.get(f"/executions/{execution.id}"))


def test_flow_pages_render(owner, flow, execution):
    # given a flow that ran once
    # when the flows list and the flow page are opened
    listing = html(owner.get("/flows"))
    detail = html(owner.get(f"/flows/{flow.id}"))
    # then the list links to it, and its page has the YAML editor, the run form, versions, graph and runs
    assert f'href="/flows/{flow.id}"' in listing and 'id="upload"' in listing
    assert "greet:" in detail and 'id="run-input"' in detail and 'id="versions"' in detail
    assert 'data-node="shout"' in detail and str(execution.id)[:8] in detail


def test_flow_page_has_the_schedules_card(owner, flow):
    # when the flow page is opened
    detail = html(owner.get(f"/flows/{flow.id}"))
    # then it has the schedules table (its rows come from GET /flows/{id}/schedules) and the form to add one
    assert 'id="schedules"' in detail and 'id="schedule-form"' in detail and 'id="schedule-when"' in detail


# --- tenant isolation ---------------------------------------------------------------------------------------


def test_another_accounts_execution_and_flow_are_not_found(owner, other_member):
    # given an execution and a flow of another account
    theirs = make_execution(*other_member)
    # when the member opens them, then they do not exist (and a random id is the same)
    for path in [f"/executions/{theirs.id}", f"/flows/{theirs.flow_id}", f"/executions/{uuid.uuid4()}"]:
        response = owner.get(path)
        assert response.status_code == 404, path
        assert "Greeting" not in html(response) and "Not found" in html(response)
        assert "Content-Security-Policy" in response


def test_deleted_flow_is_not_found(owner, member, flow):
    from flows.services import flow_delete

    flow_delete(flow=flow)
    assert owner.get(f"/flows/{flow.id}").status_code == 404


# --- security headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/flows", "flow", "execution", "/login"])
def test_security_headers_and_no_inline_script(owner, flow, execution, path):
    # given any dashboard page
    path = {"flow": f"/flows/{flow.id}", "execution": f"/executions/{execution.id}"}.get(path, path)
    if path == "/login":
        owner.logout()
    # when it is served
    response = owner.get(path)
    assert response.status_code == 200
    # then it carries the security headers
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "ws://testserver" in directives["connect-src"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    # and it has no inline script, event handler or style attribute (all would be blocked)
    page = html(response)
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", page)
    assert " style=" not in page and "<style" not in page


def test_api_and_admin_keep_their_own_headers(owner):
    # the CSP is the dashboard's: the API answers JSON without it
    assert "Content-Security-Policy" not in owner.get("/api/v1/flows")


# --- static files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/static/dashboard/js/common.js", "javascript"),
        ("/static/dashboard/css/dashboard.css", "text/css"),
        ("/static/admin/css/base.css", "text/css"),
    ],
)
def test_static_files_are_served(client, settings, path, content_type):
    # given production settings (daphne serves no static files itself)
    settings.DEBUG = False
    # when a static file is requested, then it is served with its type and nosniff
    response = client.get(path)
    assert response.status_code == 200
    assert content_type in response["Content-Type"]
    assert response["X-Content-Type-Options"] == "nosniff"
    b"".join(response.streaming_content)


@pytest.mark.parametrize(
    "path", ["/static/dashboard/", "/static/../flowrunner/settings.py", "/static/dashboard/nope.js"]
)
def test_static_serves_no_listing_and_nothing_outside(client, path):
    assert client.get(path).status_code == 404
