"""REST API of flows: CRUD, raw YAML in and out, versions, errors in the envelope, tenant isolation."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from flows.models import Flow, FlowVersion
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db

FLOWS = "/api/v1/flows"

GOOD = """\
metadata:
  name: Order pipeline
  description: Totals the orders
  version: "1.0.0"
nodes:
  fetch:
    type: transform
    params:
      script: "return {total: 1};"
    next:
      success: finish
  finish:
    type: transform
    params:
      script: "return {done: true};"
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


def changed(total: int) -> str:
    return GOOD.replace("total: 1", f"total: {total}")


def create(client: APIClient, content: str = GOOD, **extra) -> dict:
    response = client.post(FLOWS, {"content": content, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_flow_create_json_body_returns_flow(api):
    # given a flow text in a JSON body
    # when it is posted
    body = create(api)
    # then the flow JSON comes back with its id, metadata and version 1
    assert set(body) == {
        "id",
        "name",
        "description",
        "version",
        "version_number",
        "content",
        "created_at",
        "updated_at",
    }
    assert body["id"].startswith("order-pipeline-")
    assert (body["name"], body["description"]) == ("Order pipeline", "Totals the orders")
    assert (body["version"], body["version_number"], body["content"]) == ("1.0.0", 1, GOOD)


def test_flow_create_json_name_overrides_metadata(api):
    # given a body with a name; when it is posted; then the name wins over metadata.name
    assert create(api, name="Billing")["name"] == "Billing"


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml", "text/yaml"])
def test_flow_create_raw_yaml_body(api, content_type):
    # given the YAML text itself as the body
    # when it is posted with a YAML content type
    response = api.post(FLOWS, GOOD, content_type=content_type)
    # then the flow is created from it
    assert response.status_code == 201, response.content
    assert response.json()["content"] == GOOD
    assert Flow.objects.get(pk=response.json()["id"]).name == "Order pipeline"


def test_flow_create_invalid_flow_lists_problems_with_lines(api):
    # given a flow whose edge on line 7 points nowhere
    # when it is posted
    response = api.post(FLOWS, {"content": BROKEN}, format="json")
    # then 400 lists each problem with its path, line and column
    error = assert_envelope(response, 400, "validation_error")
    assert error["message"] == "The flow is not valid."
    assert all(set(problem) == {"path", "line", "column", "message"} for problem in error["details"])
    assert any(problem["line"] == 7 and "nowhere" in problem["message"] for problem in error["details"])
    assert not Flow.objects.exists()


def test_flow_create_yaml_syntax_error_reports_line(api):
    # given a raw YAML body that is not well-formed on line 3
    text = "metadata:\n  name: x\nnodes: [unclosed\n"
    # when it is posted
    response = api.post(FLOWS, text, content_type="application/yaml")
    # then the problem carries a line number
    error = assert_envelope(response, 400, "validation_error")
    assert error["details"] and all(isinstance(problem["line"], int) for problem in error["details"])


def test_flow_create_malformed_json_is_400(api):
    # given a body that is not JSON; when it is posted; then 400 in the envelope
    response = api.post(FLOWS, '{"content": ', content_type="application/json")
    assert_envelope(response, 400)


def test_flow_create_unknown_field_is_400(api):
    # given a body with a misspelled field
    response = api.post(FLOWS, {"content": GOOD, "nmae": "typo"}, format="json")
    # then 400 names it
    error = assert_envelope(response, 400, "validation_error")
    assert [detail["path"] for detail in error["details"]] == ["nmae"]
    assert not Flow.objects.exists()


@pytest.mark.parametrize("content", [42, True, None, ["a"], {"nodes": {}}])
def test_flow_create_non_string_content_is_400(api, content):
    # given content that is not a string
    response = api.post(FLOWS, {"content": content}, format="json")
    # then 400 points at the content field
    error = assert_envelope(response, 400, "validation_error")
    assert [detail["path"] for detail in error["details"]] == ["content"]


@pytest.mark.parametrize("body", [{}, [], "text"])
def test_flow_create_without_a_content_object_is_400(api, body):
    # given a JSON body with no content field, or not an object; then 400
    assert_envelope(api.post(FLOWS, body, format="json"), 400, "validation_error")


def test_flow_create_oversized_body_is_413(api, settings):
    # given a body limit of 2 KiB
    settings.FLOWRUNNER_MAX_BODY_BYTES = 2048
    padding = "# " + "x" * 4000 + "\n"
    # when a larger body is posted, as JSON or as raw YAML
    as_json = api.post(FLOWS, {"content": GOOD + padding}, format="json")
    as_yaml = api.post(FLOWS, GOOD + padding, content_type="application/yaml")
    # then both are refused with 413 in the envelope
    assert_envelope(as_json, 413, "payload_too_large")
    assert_envelope(as_yaml, 413, "payload_too_large")
    assert not Flow.objects.exists()


def test_flow_create_body_over_django_upload_limit_is_413(api, settings):
    # given Django's own upload limit below the flows limit
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    # when a 2 KiB body is posted, then Django's RequestDataTooBig becomes a 413 envelope
    response = api.post(FLOWS, GOOD + "#" + "x" * 2048 + "\n", content_type="application/yaml")
    assert_envelope(response, 413, "payload_too_large")


def test_flow_list_is_paginated_newest_first(api):
    # given three flows
    ids = [create(api, name=f"Flow {n}")["id"] for n in range(3)]
    # when the list is read one page of two at a time
    first = api.get(FLOWS, {"limit": 2}).json()
    second = api.get(FLOWS, {"limit": 2, "offset": 2}).json()
    # then the envelope counts all three and pages newest first
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 3 and first["previous"] is None and first["next"]
    assert [flow["id"] for flow in first["results"] + second["results"]] == ids[::-1]
    assert second["next"] is None


def test_flow_get_returns_flow_with_content(api):
    # given a flow; when it is read; then its JSON includes the YAML text
    flow = create(api)
    response = api.get(f"{FLOWS}/{flow['id']}")
    assert response.status_code == 200
    assert response.json() == flow


def test_flow_get_accept_yaml_returns_the_text(api):
    # given a flow
    flow = create(api)
    # when it is read with Accept: application/yaml
    response = api.get(f"{FLOWS}/{flow['id']}", HTTP_ACCEPT="application/yaml")
    # then the body is the YAML as uploaded
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    assert response.content.decode() == GOOD


def test_flow_get_accept_yaml_errors_stay_json(api):
    # given no such flow; when it is read asking for YAML; then the 404 is still the JSON envelope
    response = api.get(f"{FLOWS}/missing-abc123", HTTP_ACCEPT="application/yaml")
    assert response["Content-Type"].startswith("application/json")
    assert_envelope(response, 404, "not_found")


def test_flow_update_creates_a_new_version(api):
    # given a flow
    flow = create(api)
    # when a changed text is put, once as JSON and once as raw YAML
    first = api.put(f"{FLOWS}/{flow['id']}", {"content": changed(2)}, format="json")
    second = api.put(f"{FLOWS}/{flow['id']}", changed(3), content_type="application/yaml")
    # then each answer is 200 with the next version number and the new text
    assert first.status_code == 200 and second.status_code == 200, second.content
    assert (first.json()["version_number"], second.json()["version_number"]) == (2, 3)
    assert second.json()["content"] == changed(3)
    assert api.get(f"{FLOWS}/{flow['id']}").json()["version_number"] == 3


def test_flow_update_identical_content_keeps_version(api):
    # given a flow; when the same text is put again; then no version is added
    flow = create(api)
    response = api.put(f"{FLOWS}/{flow['id']}", {"content": GOOD}, format="json")
    assert response.status_code == 200
    assert response.json()["version_number"] == 1
    assert FlowVersion.objects.filter(flow_id=flow["id"]).count() == 1


def test_flow_update_invalid_flow_is_400_and_changes_nothing(api):
    # given a flow; when a broken text is put
    flow = create(api)
    response = api.put(f"{FLOWS}/{flow['id']}", {"content": BROKEN}, format="json")
    # then 400 with line details, and the flow keeps version 1
    error = assert_envelope(response, 400, "validation_error")
    assert any(problem["line"] == 7 for problem in error["details"])
    assert api.get(f"{FLOWS}/{flow['id']}").json()["version_number"] == 1


def test_flow_versions_lists_every_upload(api, member):
    # given a flow uploaded three times
    flow = create(api)
    api.put(f"{FLOWS}/{flow['id']}", {"content": changed(2)}, format="json")
    api.put(f"{FLOWS}/{flow['id']}", {"content": changed(3)}, format="json")
    # when its versions are listed
    body = api.get(f"{FLOWS}/{flow['id']}/versions").json()
    # then the paginated envelope lists them newest first, with who uploaded them
    assert body["count"] == 3
    assert [v["number"] for v in body["results"]] == [3, 2, 1]
    assert set(body["results"][0]) == {"number", "version", "created_at", "created_by"}
    assert body["results"][0]["created_by"] == member[1].username


def test_flow_delete_hides_the_flow(api):
    # given a flow
    flow = create(api)
    # when it is deleted
    response = api.delete(f"{FLOWS}/{flow['id']}")
    # then 204, it is gone from the API, and its row and history remain
    assert response.status_code == 204
    assert api.get(FLOWS).json()["count"] == 0
    assert_envelope(api.get(f"{FLOWS}/{flow['id']}"), 404, "not_found")
    assert_envelope(api.get(f"{FLOWS}/{flow['id']}/versions"), 404, "not_found")
    assert_envelope(api.put(f"{FLOWS}/{flow['id']}", {"content": changed(2)}, format="json"), 404)
    assert_envelope(api.delete(f"{FLOWS}/{flow['id']}"), 404)
    assert Flow.objects.get(pk=flow["id"]).deleted_at is not None


def test_flow_of_another_account_is_404_and_untouched(api, other_api):
    # given a flow of another account
    theirs = create(other_api)
    url = f"{FLOWS}/{theirs['id']}"
    missing = api.get(f"{FLOWS}/no-such-flow")
    # when the caller reads, updates, deletes it or lists its versions
    answers = [
        api.get(url),
        api.put(url, {"content": changed(2)}, format="json"),
        api.delete(url),
        api.get(f"{url}/versions"),
    ]
    # then every answer is the same 404 as for a missing flow, and nothing changed
    for response in answers:
        assert_envelope(response, 404, "not_found")
        assert response.json() == missing.json()
    assert api.get(FLOWS).json()["count"] == 0
    assert other_api.get(url).json() == theirs
    assert FlowVersion.objects.filter(flow_id=theirs["id"]).count() == 1


def test_flow_unknown_method_is_405(api):
    # given a flow; when PATCH /flows/{id} or DELETE /flows is sent; then 405 in the envelope
    flow = create(api)
    assert_envelope(
        api.patch(f"{FLOWS}/{flow['id']}", {"content": GOOD}, format="json"), 405, "method_not_allowed"
    )
    assert_envelope(api.delete(FLOWS), 405, "method_not_allowed")


def test_flow_trailing_slash_is_not_redirected(api):
    # given the list path with a trailing slash; when it is read; then 404, never a redirect
    assert api.get(f"{FLOWS}/").status_code == 404


def test_flow_api_without_credentials_is_401(db):
    # given a client with no credentials
    client = APIClient()
    # when it lists or creates flows
    responses = [client.get(FLOWS), client.post(FLOWS, {"content": GOOD}, format="json")]
    # then 401 with a WWW-Authenticate challenge, in the envelope
    for response in responses:
        assert_envelope(response, 401, "not_authenticated")
        assert response.has_header("WWW-Authenticate")
    assert not Flow.objects.exists()


def test_flow_api_user_without_account_is_403(db, django_user_model):
    # given an authenticated user who belongs to no account
    client = APIClient()
    client.force_authenticate(user=django_user_model.objects.create_user(username="loner", password="x" * 12))
    # when it lists flows, then 403 no_account (authenticated, but there is no tenant to scope anything to)
    assert_envelope(client.get(FLOWS), 403, "no_account")


def test_flow_create_content_may_be_posted_as_json_string(api):
    # given a JSON body whose content is the YAML text, with unicode in it
    text = GOOD.replace("Totals the orders", "Totalise les commandes — été")
    # when it is posted; then the text is stored and returned exactly
    body = create(api, content=text)
    assert body["description"] == "Totalise les commandes — été"
    assert json.loads(api.get(f"{FLOWS}/{body['id']}").content)["content"] == text
