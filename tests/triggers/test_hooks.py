"""Inbound hooks: the secret shown once, Bearer or HMAC-signed deliveries start runs; anything else starts none."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from rest_framework.test import APIClient

from executions.models import Execution
from flows.services import flow_create
from triggers.models import HookDelivery, Trigger

pytestmark = pytest.mark.usefixtures("no_broker")

FLOW = """
metadata: {name: hooked flow}
nodes:
  a: {type: transform, params: {script: "return {a: 1}"}}
"""


@pytest.fixture
def flow(member):
    account, user = member
    return flow_create(account=account, user=user, content=FLOW)


@pytest.fixture
def hook(api, flow):
    body = api.post(f"/api/v1/flows/{flow.id}/triggers", {"name": "github"}, format="json").json()
    return body


def _sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    message = body if timestamp is None else f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _post(hook, body: bytes, **headers):
    return APIClient().generic(
        "POST", f"/api/v1/hooks/{hook['id']}", body, content_type="application/json", headers=headers
    )


def test_hooks_create_shows_the_secret_once_and_stores_it_encrypted(api, flow, hook):
    # Then the answer has the URL and the secret; the list has the URL only; the row holds no clear secret
    assert set(hook) == {
        "id",
        "flow_id",
        "name",
        "url",
        "secret",
        "enabled",
        "callback_url",
        "last_fired_at",
        "created_at",
    }
    assert hook["url"].endswith(f"/api/v1/hooks/{hook['id']}") and hook["secret"].startswith("frh_")
    listed = api.get(f"/api/v1/flows/{flow.id}/triggers").json()
    assert [row["id"] for row in listed] == [hook["id"]] and "secret" not in listed[0]
    assert hook["secret"] not in Trigger.objects.get(id=hook["id"]).secret_ciphertext


def test_hooks_signed_delivery_starts_a_run_and_a_replay_does_not(hook):
    # Given a signed delivery
    body = json.dumps({"ref": "main"}).encode()
    headers = {"X-FlowRunner-Signature": _sign(hook["secret"], body)}
    # When it is sent, then sent again unchanged
    first = _post(hook, body, **headers)
    replay = _post(hook, body, **headers)
    # Then one run with the body as input; the replay names it and starts nothing
    assert first.status_code == 202, first.content
    execution = Execution.objects.get(id=first.json()["execution_id"])
    assert execution.input == {"ref": "main"}
    assert execution.trigger == {"type": "hook", "trigger_id": hook["id"]}
    assert replay.status_code == 200 and replay.json() == first.json()
    assert Execution.objects.count() == 1


def test_hooks_timestamped_signature_is_accepted_once_and_a_stale_one_refused(hook):
    body = b'{"n": 1}'
    now = int(time.time())
    fresh = {"X-FlowRunner-Signature": _sign(hook["secret"], body, now), "X-FlowRunner-Timestamp": str(now)}
    stale_at = now - 3600
    stale = {
        "X-FlowRunner-Signature": _sign(hook["secret"], body, stale_at),
        "X-FlowRunner-Timestamp": str(stale_at),
    }
    assert _post(hook, body, **fresh).status_code == 202
    assert _post(hook, body, **fresh).status_code == 200
    # A newer timestamp is a new delivery (same body, new signature)
    later = {
        "X-FlowRunner-Signature": _sign(hook["secret"], body, now + 1),
        "X-FlowRunner-Timestamp": str(now + 1),
    }
    assert _post(hook, body, **later).status_code == 202
    refused = _post(hook, body, **stale)
    assert refused.status_code == 401 and refused.json()["error"]["code"]
    # The timestamp is signed: moving it breaks the signature
    moved = {**fresh, "X-FlowRunner-Timestamp": str(now + 2)}
    assert _post(hook, body, **moved).status_code == 401
    assert Execution.objects.count() == 2


def test_hooks_bearer_secret_starts_a_run(hook):
    response = _post(hook, b"", Authorization=f"Bearer {hook['secret']}")
    assert response.status_code == 202, response.content
    assert Execution.objects.get(id=response.json()["execution_id"]).input == {}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer frh_wrong"},
        {"Authorization": "Basic abc"},
        {"X-FlowRunner-Signature": "sha256=" + "0" * 64},
        {"X-FlowRunner-Signature": "md5=abc"},
    ],
)
def test_hooks_unsigned_or_wrongly_signed_delivery_is_401_and_starts_nothing(hook, headers):
    response = _post(hook, b'{"x": 1}', **headers)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["message"]
    assert hook["secret"] not in response.content.decode()
    assert Execution.objects.count() == 0 and HookDelivery.objects.count() == 0


def test_hooks_unknown_disabled_or_deleted_trigger_is_404(api, hook):
    auth = {"Authorization": f"Bearer {hook['secret']}"}
    assert _post({"id": "00000000-0000-0000-0000-000000000000"}, b"{}", **auth).status_code == 404
    assert _post({"id": "not-a-uuid"}, b"{}", **auth).status_code == 404
    Trigger.objects.filter(id=hook["id"]).update(enabled=False)
    assert _post(hook, b"{}", **auth).status_code == 404
    Trigger.objects.filter(id=hook["id"]).update(enabled=True)
    assert api.delete(f"/api/v1/triggers/{hook['id']}").status_code == 204
    assert _post(hook, b"{}", **auth).status_code == 404
    assert Execution.objects.count() == 0


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"text"'])
def test_hooks_body_that_is_not_a_json_object_is_400(hook, body):
    response = _post(hook, body, Authorization=f"Bearer {hook['secret']}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    assert Execution.objects.count() == 0


def test_hooks_idempotency_key_returns_the_first_run(hook):
    auth = {"Authorization": f"Bearer {hook['secret']}", "Idempotency-Key": "delivery-1"}
    first = _post(hook, b'{"a": 1}', **auth)
    again = _post(hook, b'{"a": 1}', **auth)
    other = _post(hook, b'{"a": 2}', **auth)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == first.json() and other.status_code == 422
    assert Execution.objects.count() == 1


def test_hooks_rate_limit_per_trigger_is_429(hook, settings):
    settings.FLOWRUNNER_HOOK_RATE_LIMIT = 2
    auth = {"Authorization": f"Bearer {hook['secret']}"}
    codes = [_post(hook, b"{}", **auth).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert Execution.objects.count() == 2


def test_hooks_of_another_account_are_not_listed_or_deleted(other_api, flow, hook):
    assert other_api.get(f"/api/v1/flows/{flow.id}/triggers").status_code == 404
    assert other_api.delete(f"/api/v1/triggers/{hook['id']}").status_code == 404
    assert other_api.post(f"/api/v1/flows/{flow.id}/triggers", {}, format="json").status_code == 404
