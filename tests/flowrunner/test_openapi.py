"""The OpenAPI document (flowrunner.openapi): errors, constraints, media types, ids; the parameters it validates."""

from __future__ import annotations

import re

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from rest_framework.test import APIClient

from executions import dispatch
from flows.services import flow_create

FLOW = "metadata: {name: doc flow}\nnodes:\n  a: {type: transform, params: {script: 'return {a: 1}'}}\n"


@pytest.fixture(scope="module")
def document(openapi_document) -> dict:
    return openapi_document


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _validator(document: dict, pointer: str) -> jsonschema.Draft202012Validator:
    registry = Registry().with_resource("urn:doc", Resource.from_contents(document, DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"urn:doc#{pointer}"}, registry=registry)


def _error_ref(response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"]


def test_openapi_every_operation_declares_the_errors_it_can_answer(document):
    # given every operation of the document
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        secured = operation.get("security") and {} not in operation["security"]
        with_body = "requestBody" in operation
        with_id = any(p["in"] == "path" for p in operation.get("parameters", []))
        with_query = any(p["in"] == "query" for p in operation.get("parameters", []))
        # then the errors that follow from what it does are there, each in the envelope
        expected = {"406", "503"}
        expected |= {"401", "403", "429"} if secured else {"429"} if operation.get("security") else set()
        expected |= {"400", "413", "415"} if with_body else set()
        expected |= {"404"} if with_id else set()
        expected |= {"400"} if with_query else set()
        assert expected <= set(responses), (method, path, sorted(expected - set(responses)))
        for code, response in responses.items():
            # (the health check answers an unreachable database with its own body)
            if code >= "400" and (path, code) != ("/api/v1/health", "503"):
                assert _error_ref(response) == "#/components/schemas/Error", (method, path, code)
        if secured:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
            assert responses["429"]["headers"]["Retry-After"]["required"] is True


def test_openapi_operation_ids_and_tags_suit_code_generation(document):
    # given the operations
    operations = list(_operations(document))
    ids = [operation["operationId"] for _, _, operation in operations]
    # then ids are unique snake_case names and every operation has one declared tag
    declared = {tag["name"] for tag in document["tags"]}
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ids), ids
    assert all(len(op["tags"]) == 1 and op["tags"][0] in declared for _, _, op in operations)
    assert {"flows_create", "flows_run", "executions_retrieve", "executions_logs", "login"} <= set(ids)


def test_openapi_lists_are_the_paginated_envelope_with_bounded_parameters(document):
    # given the three list operations
    for path in ("/api/v1/flows", "/api/v1/executions", "/api/v1/flows/{flow_id}/versions"):
        operation = document["paths"][path]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        component = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        parameters = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
        # then each answers {count, next, previous, results} and takes limit 1..500, offset from 0
        assert set(component["required"]) == {"count", "next", "previous", "results"}, path
        assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 500)
        assert parameters["offset"]["minimum"] == 0


def test_openapi_yaml_bodies_and_answers_are_flow_documents(document):
    # given the flow operations that read or answer YAML
    flow = document["paths"]["/api/v1/flows/{flow_id}"]
    bodies = [document["paths"]["/api/v1/flows"]["post"]["requestBody"], flow["put"]["requestBody"]]
    answers = [flow["get"]["responses"]["200"], flow["put"]["responses"]["200"]]
    document_ref = {"$ref": "#/components/schemas/FlowDocument"}
    # then YAML in or out is described as the flow document, and the JSON form's content as a flow's text
    for body in bodies:
        assert body["required"] is True
        assert {
            media: c["schema"] for media, c in body["content"].items() if "yaml" in media
        } == dict.fromkeys(["application/yaml", "application/x-yaml", "text/yaml"], document_ref)
    assert all(answer["content"]["application/yaml"]["schema"] == document_ref for answer in answers)
    content = document["components"]["schemas"]["FlowWriteRequest"]["properties"]["content"]
    assert content["format"] == "flow-yaml"
    flow_document = _validator(document, "/components/schemas/FlowDocument")
    assert not list(flow_document.iter_errors(yaml.safe_load(FLOW)))
    assert list(flow_document.iter_errors({"metadata": {"name": "x"}, "nodes": {}}))


def _schemas(document: dict):
    """Every schema of the document: the components' and each one an operation states inline."""
    yield from document["components"]["schemas"].items()
    for method, path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            yield f"{method} {path} {parameter['name']}", parameter["schema"]
        bodies = [operation.get("requestBody", {})] + list(operation.get("responses", {}).values())
        for body in bodies:
            for media, content in body.get("content", {}).items():
                yield f"{method} {path} {media}", content.get("schema", {})


def test_openapi_every_schema_is_valid_json_schema(document):
    # given every schema in the document
    # when each is checked against JSON Schema 2020-12's own meta-schema
    problems = {}
    for name, schema in _schemas(document):
        errors = list(
            jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA).iter_errors(schema)
        )
        if errors:
            problems[name] = [error.message for error in errors]
    # then none breaks it (a `type` listing "null" twice did: validators then judge the values it describes at random)
    assert problems == {}


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"input": {"a": [1, {"b": "text"}], "n": 9007199254740993}}, True),
        ({}, True),
        ({"input": None}, False),
        ({"input": [1]}, False),
        ({"input": {"a": ["x\u0000y"]}}, False),
        ({"input": {"a\u0000": 1}}, False),
        ({"input": {"a": 2**64}}, False),
        # JSON Schema counts a float with no fractional part as an integer, so a huge float is out of range too
        ({"input": {"a": [1e300]}}, False),
        ({"input": {"a": {"b": -1.7976931348623157e308}}}, False),
        ({"input": {"a": 9.2e18, "b": -0.5, "c": 5e-324}}, True),
        ({"input": {}, "extra": 1}, False),
        ({"callback_url": "http://93.184.216.34/cb"}, True),
        (
            {"callback_url": "http://\x9b"},
            False,
        ),  # a C1 control: the pattern's class and the server refuse it
    ],
)
def test_openapi_run_body_rules_are_the_servers(document, api, member, body, valid, monkeypatch):
    # given a flow, and the document's schema of a run's body
    monkeypatch.setattr(dispatch, "send_now", lambda *args, **kwargs: None)
    flow = flow_create(account=member[0], user=member[1], content=FLOW)
    schema = _validator(document, "/components/schemas/RunRequest")
    # when the body is judged by the document and by the server
    documented = not list(schema.iter_errors(body))
    response = api.post(f"/api/v1/flows/{flow.id}/run", body, format="json")
    # then both agree
    assert documented is valid
    assert (response.status_code == 201) is valid, response.content


@pytest.mark.parametrize(
    "query",
    ["limit=true", "limit=0", "limit=501", "limit=-1", "limit=5%20", "limit=%2B5", "offset=-1", "offset=x"],
)
def test_pagination_refuses_values_outside_the_documented_range(api, query):
    # when a list is asked for with a limit or offset the document does not allow
    responses = [api.get(f"/api/v1/{path}?{query}") for path in ("flows", "executions")]
    # then each is a 400 naming the parameter, in the envelope
    for response in responses:
        assert response.status_code == 400, response.content
        assert response.json()["error"]["details"][0]["path"] == query.split("=")[0]


def test_pagination_accepts_the_documented_bounds(api):
    # when the bounds themselves are asked for
    responses = [
        api.get("/api/v1/flows?limit=1&offset=0"),
        api.get("/api/v1/flows?limit=500&offset=2147483647"),
    ]
    # then both are answered
    assert [response.status_code for response in responses] == [200, 200]


@pytest.mark.parametrize(("query", "status"), [("status=", 400), ("status=done", 400), ("flow_id=", 200)])
def test_execution_filters_are_validated_as_documented(api, query, status):
    # when the executions are filtered by an empty or unknown status, or an empty flow id
    response = api.get(f"/api/v1/executions?{query}")
    # then an empty or unknown status is a 400, and an empty flow id names no flow
    assert response.status_code == status, response.content
    if status == 200:
        assert response.json()["count"] == 0


@pytest.mark.parametrize(("value", "status"), [("", 400), ("xml", 400), ("yaml", 200), ("json", 200)])
def test_flow_format_parameter_must_name_a_documented_format(api, member, value, status):
    # given a flow
    flow = flow_create(account=member[0], user=member[1], content=FLOW)
    # when it is read with ?format=
    response = api.get(f"/api/v1/flows/{flow.id}?format={value}")
    # then only json and yaml are answered, anything else is a 400 in the JSON envelope
    assert response.status_code == status, response.content
    if value == "yaml":
        assert response["Content-Type"].startswith("application/yaml") and response.content.decode() == FLOW
    if status == 400:
        assert response.json()["error"]["details"][0]["path"] == "format"


@pytest.mark.parametrize(("username", "status"), [("alice.b+c@x-y_z", 201), ("¼lice", 400), ("al ice", 400)])
def test_signup_takes_the_documented_ascii_usernames(db, username, status):
    # when an account is signed up for
    response = APIClient().post(
        "/api/v1/accounts", {"username": username, "password": "a long passphrase"}, format="json"
    )
    # then names outside the documented pattern are refused
    assert response.status_code == status, response.content
