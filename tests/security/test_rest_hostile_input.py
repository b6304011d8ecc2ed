"""Hostile REST input on the live stack: oversized, nested, bombs, bad bytes, path tricks; nothing stored."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import assert_envelope
from tests.integration.api_steps import create_flow, start_run
from tests.security.helpers import transform_flow, wait_all

pytestmark = [pytest.mark.faults]

JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}
VALID_FLOW = transform_flow("hostile", "return 1")


@pytest.fixture
def objects(live_api) -> dict[str, str]:
    """A flow, a finished execution and a secret of the caller's account, for the endpoints that need ids."""
    flow_id = create_flow(live_api, VALID_FLOW)
    execution_id = start_run(live_api, flow_id)
    wait_all(live_api, [execution_id])
    assert live_api.put("/accounts/me/secrets/HOSTILE", json={"value": "v"}).status_code == 201
    return {"flow": flow_id, "execution": execution_id, "key": "HOSTILE"}


def _row_counts(account_id: str) -> dict[str, int]:
    """Users and accounts (a signup makes both), and everything of the caller's account: other tests' executions,
    still moving in other accounts, must not count."""
    from django.contrib.auth import get_user_model

    from accounts.models import Account, ApiToken, Secret
    from executions.models import Execution, ExecutionEvent, NodeRun
    from flows.models import Flow, FlowVersion

    querysets = {
        "User": get_user_model().objects.all(),
        "Account": Account.objects.all(),
        "ApiToken": ApiToken.objects.filter(user__membership__account_id=account_id),
        "Secret": Secret.objects.filter(account_id=account_id),
        "Flow": Flow.objects.filter(account_id=account_id),
        "FlowVersion": FlowVersion.objects.filter(flow__account_id=account_id),
        "Execution": Execution.objects.filter(account_id=account_id),
        "NodeRun": NodeRun.objects.filter(execution__account_id=account_id),
        "ExecutionEvent": ExecutionEvent.objects.filter(execution__account_id=account_id),
    }
    return {name: queryset.count() for name, queryset in querysets.items()}


@pytest.fixture
def nothing_stored(live_db, live_user, objects) -> Iterator[None]:
    """The row counts are the same after the test as before it."""
    before = _row_counts(live_user.account_id)
    yield
    assert _row_counts(live_user.account_id) == before


def _writes(objects: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(method, path, anonymous) of every endpoint that reads a body."""
    return [
        ("POST", "/accounts", True),
        ("POST", "/login", True),
        ("PUT", "/accounts/me/secrets/HOSTILE", False),
        ("POST", "/accounts/me/secrets/OTHER", False),
        ("POST", "/flows", False),
        ("PUT", f"/flows/{objects['flow']}", False),
        ("POST", f"/flows/{objects['flow']}/run", False),
        ("POST", f"/executions/{objects['execution']}/retry", False),
    ]


def _send(stack, user, method: str, path: str, anonymous: bool, **kwargs) -> httpx.Response:
    auth = None if anonymous else user.auth
    with stack.client(auth=auth) as client:
        return client.request(method, path, **kwargs)


def test_oversized_bodies_answer_413_everywhere_with_or_without_content_length(
    live_stack, live_user, objects, nothing_stored
):
    # given a body one byte over FLOWRUNNER_MAX_BODY_BYTES (valid JSON, so only its size is wrong)
    limit = int(live_stack.env.get("FLOWRUNNER_MAX_BODY_BYTES", 1_048_576))
    padding = "x" * (limit + 1 - len('{"content": ""}'))
    body = json.dumps({"content": padding}).encode()
    assert len(body) == limit + 1
    for method, path, anonymous in _writes(objects):
        # when it is sent with a Content-Length, and chunked (no length declared)
        declared = _send(live_stack, live_user, method, path, anonymous, content=body, headers=JSON)
        chunked = _send(live_stack, live_user, method, path, anonymous, content=iter([body]), headers=JSON)
        # then both are refused with 413 in the envelope, naming the limit
        for response in (declared, chunked):
            error = assert_envelope(response, 413, "payload_too_large")
            assert error["details"] == {"limit": limit}, (method, path)


def test_deeply_nested_json_is_a_400_not_a_500(live_stack, live_user, objects, nothing_stored):
    # given JSON nested 100,000 levels (200 KB: under the size limit) and one just past the 100 levels allowed
    bomb = b"[" * 100_000 + b"]" * 100_000
    just_too_deep = json.dumps({"input": json.loads("[" * 100 + "]" * 100)}).encode()
    for method, path, anonymous in _writes(objects):
        # when each body endpoint gets them
        response = _send(live_stack, live_user, method, path, anonymous, content=bomb, headers=JSON)
        # then the answer is a 400 in the envelope
        assert_envelope(response, 400)
    run = f"/flows/{objects['flow']}/run"
    response = _send(live_stack, live_user, "POST", run, False, content=just_too_deep, headers=JSON)
    assert "100 levels" in json.dumps(assert_envelope(response, 400))


def test_yaml_alias_bombs_and_unstorable_yaml_are_400(live_api, objects, nothing_stored):
    # given a billion-laughs document, a recursive alias, and YAML whose values PostgreSQL cannot store
    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
    recursive = "metadata: &m {name: x, again: *m}\nnodes: {}\n"
    nul_escape = VALID_FLOW.replace('"hostile"', '"hos\\0tile"')
    huge_int = (
        VALID_FLOW + "  other: {type: transform, params: {script: 'return 1', x: " + "9" * 5000 + "}}\n"
    )
    for text in (laughs, recursive, nul_escape, huge_int):
        # when each is uploaded as raw YAML, as the JSON form, and as a new version of an existing flow
        responses = [
            live_api.post("/flows", content=text.encode(), headers=YAML),
            live_api.post("/flows", json={"content": text}),
            live_api.put(f"/flows/{objects['flow']}", json={"content": text}),
        ]
        # then each is refused as an invalid flow
        for response in responses:
            assert_envelope(response, 400, "validation_error")
    bomb = live_api.post("/flows", content=laughs.encode(), headers=YAML).json()["error"]
    assert "aliases expand to more than" in json.dumps(bomb["details"])


def test_invalid_utf8_bodies_are_400(live_stack, live_user, objects, nothing_stored):
    # given bodies that are not UTF-8 (a stray 0xff), as JSON and as YAML
    bad_json = b'{"username": "\xff\xfe", "password": "x", "content": "\xff", "value": "\xff", "input": {}}'
    bad_yaml = b"metadata: {name: \xff}\nnodes: {}\n"
    for method, path, anonymous in _writes(objects):
        # when they are sent
        response = _send(live_stack, live_user, method, path, anonymous, content=bad_json, headers=JSON)
        # then they are refused as malformed
        assert_envelope(response, 400)
    for path in ("/flows", f"/flows/{objects['flow']}"):
        method = "POST" if path == "/flows" else "PUT"
        assert_envelope(
            _send(live_stack, live_user, method, path, False, content=bad_yaml, headers=YAML), 400
        )


UNSTORABLE_VALUES = [
    b"1" + b"0" * 5000,  # past Python's int conversion limit
    b"1" + b"0" * 30,  # parses, but beyond 64 bits
    b"-1" + b"0" * 400,
    b"1e400",  # a float that becomes infinity
    b"1e300",  # a float past 2**63 - 1: the schema (JSON Schema calls it an integer) refuses it too
    b'"a\\u0000b"',  # PostgreSQL cannot store NUL in text or jsonb
    b'"\\ud800"',  # an unpaired surrogate is not text
    b'{"\\u0000": 1}',
    b"NaN",
]


def test_unstorable_json_values_are_400_and_start_nothing(live_stack, live_user, objects, nothing_stored):
    run = f"/flows/{objects['flow']}/run"
    for raw_input in UNSTORABLE_VALUES:
        # given a run request whose input holds a value no part of the system can store or give a script
        body = b'{"input": {"value": ' + raw_input + b"}}"
        # when it is posted
        response = _send(live_stack, live_user, "POST", run, False, content=body, headers=JSON)
        # then it is a 400, and (fixture) no execution was created
        assert_envelope(response, 400)


def _raw(stack, user, method: str, path: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    """One request with the path sent byte for byte (httpx would normalize `..` and encodings)."""
    address = urlsplit(stack.base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.putheader("Authorization", user.authorization)
        if body is not None:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def _tricky_ids() -> list[str]:
    return [
        "..",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2faccounts%2fme",
        "%252e%252e%252f",
        "..;",
        "a%00b",
        "%00",
        "%ff%fe",
        "%ED%A0%80",
        "a" * 5000,
    ]


def test_tricky_ids_in_every_path_answer_404_or_400_and_store_nothing(
    live_stack, live_user, objects, nothing_stored
):
    # given every route with an id in its path, and each way to smuggle something into an id
    routes = [
        ("GET", "/api/v1/flows/{}", None),
        ("PUT", "/api/v1/flows/{}", json.dumps({"content": VALID_FLOW}).encode()),
        ("DELETE", "/api/v1/flows/{}", None),
        ("GET", "/api/v1/flows/{}/versions", None),
        ("POST", "/api/v1/flows/{}/run", b"{}"),
        ("GET", "/api/v1/executions/{}", None),
        ("DELETE", "/api/v1/executions/{}", None),
        ("POST", "/api/v1/executions/{}/cancel", None),
        ("POST", "/api/v1/executions/{}/retry", b"{}"),
        ("GET", "/api/v1/executions/{}/logs", None),
        ("GET", "/api/v1/executions/{}/nodes", None),
        ("GET", "/api/v1/accounts/{}/secrets", None),
        ("PUT", "/api/v1/accounts/{}/secrets/KEY", b'{"value": "v"}'),
        ("PUT", "/api/v1/accounts/me/secrets/{}", b'{"value": "v"}'),
        ("DELETE", "/api/v1/accounts/me/secrets/{}", None),
    ]
    seen = set()
    for method, template, body in routes:
        for tricky in _tricky_ids():
            # when the id is replaced by it
            status, content_type, payload = _raw(live_stack, live_user, method, template.format(tricky), body)
            # then the answer is a refusal in the envelope, never a success, a redirect or a 5xx
            assert status in (400, 404, 405), (method, template, tricky, status, payload[:300])
            assert content_type.startswith("application/json"), (method, template, tricky, content_type)
            assert set(json.loads(payload)) == {"error"}, payload[:300]
            seen.add(status)
    assert 404 in seen
    # and the caller's real objects are all still there
    with live_stack.client(auth=live_user.auth) as client:
        assert client.get(f"/flows/{objects['flow']}").status_code == 200
        assert client.get(f"/executions/{objects['execution']}").status_code == 200
        assert [s["key"] for s in client.get("/accounts/me/secrets").json()["secrets"]] == ["HOSTILE"]
