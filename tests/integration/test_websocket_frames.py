"""Every frame of a real WebSocket session validates against docs/asyncapi.yaml, the protocol's description."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from websockets.asyncio.client import connect

from tests.integration.api_steps import create_flow, set_secret, start_run

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "complex_parallel_batch.yaml"
CLIENT_TYPES = {"subscribe", "unsubscribe", "subscribe_account", "ping"}


def _validators() -> dict[str, jsonschema.Draft7Validator]:
    """Message name → a validator of its payload, references resolved inside the AsyncAPI document."""
    document = yaml.safe_load(ASYNCAPI.read_text())
    registry = Registry().with_resource("urn:asyncapi", Resource.from_contents(document, DRAFT7))
    return {
        name: jsonschema.Draft7Validator(
            {"$ref": f"urn:asyncapi#/components/messages/{name}/payload"}, registry=registry
        )
        for name in document["components"]["messages"]
    }


def _problems(validators: dict[str, jsonschema.Draft7Validator], frame: dict[str, Any]) -> list[str]:
    validator = validators.get(frame.get("type"))
    if validator is None:
        return [f"no message named {frame.get('type')!r} in the AsyncAPI document"]
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(frame)
    ]


async def _session(
    ws_url: str, headers: dict[str, str], execution_id: str, sent: list, received: list
) -> None:
    """One connection that sends every kind of client frame, plus two it must refuse, and keeps every server
    frame until the execution's `complete`."""

    async def send(frame: dict[str, Any]) -> None:
        sent.append(frame)
        await ws.send(json.dumps(frame))

    async with connect(ws_url, additional_headers=headers, open_timeout=20, max_size=8 * 1024 * 1024) as ws:
        await send({"type": "ping"})
        await send({"type": "subscribe_account"})
        await send({"type": "subscribe", "execution_id": str(uuid.uuid4())})
        await send({"type": "subscribe", "execution_id": execution_id, "since": 0})
        await ws.send("not json")
        async with asyncio.timeout(90):
            async for raw in ws:
                received.append(json.loads(raw))
                if received[-1]["type"] == "complete" and received[-1]["execution_id"] == execution_id:
                    break
        await send({"type": "unsubscribe", "execution_id": execution_id})
        await send({"type": "ping"})
        async with asyncio.timeout(30):
            async for raw in ws:
                received.append(json.loads(raw))
                if received[-1]["type"] == "pong" and sum(f["type"] == "pong" for f in received) == 2:
                    break


@pytest.mark.parametrize("secrets", [{"API_KEY": "demo-api-key-0123", "DB_PASSWORD": "s3cret-pw"}])
def test_websocket_frames_of_a_complex_flow_validate_against_the_asyncapi_document(
    live_stack, live_user, live_api, secrets
):
    # given the complex example flow (secrets, a parallel batch with retries, a condition, custom actions)
    # started while a client watches it over the WebSocket
    validators = _validators()
    for key, value in secrets.items():
        set_secret(live_api, key, value)
    flow_id = create_flow(live_api, EXAMPLE.read_text())
    execution_id = start_run(live_api, flow_id)
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []

    # when the session runs to the execution's end
    asyncio.run(_session(live_stack.ws_url, live_user.headers, execution_id, sent, received))

    # then every frame either way validates against its message's schema, and every kind was seen
    problems = {
        json.dumps(frame)[:300]: issues
        for frame in [*sent, *received]
        if (issues := _problems(validators, frame))
    }
    assert not problems, json.dumps(problems, indent=2)
    assert {frame["type"] for frame in sent} == CLIENT_TYPES
    assert {frame["type"] for frame in received} == {"status", "node", "log", "complete", "error", "pong"}
    # (stored status events leave the input out, the subscribe snapshot has it: both shapes were checked)
    statuses = [frame["status"] for frame in received if frame["type"] == "status"]
    assert any("input" in status for status in statuses) and any("input" not in s for s in statuses)
    assert sum(frame["type"] == "node" and frame["node"]["batch_index"] is not None for frame in received) > 0


def test_websocket_frame_schemas_refuse_what_the_server_never_sends():
    # given frames shaped like the server's but wrong in one way each
    validators = _validators()
    execution_id = str(uuid.uuid4())
    wrong = [
        {"type": "status", "execution_id": execution_id, "seq": 1, "timestamp": "yesterday", "status": {}},
        {"type": "pong", "execution_id": None, "seq": None, "timestamp": "2026-01-01T00:00:00+00:00", "x": 1},
        {"type": "complete", "execution_id": execution_id, "seq": -1, "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "node", "execution_id": execution_id, "seq": 2, "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "surprise", "execution_id": None, "seq": None, "timestamp": "2026-01-01T00:00:00Z"},
    ]
    # when each is validated
    results = [_problems(validators, frame) for frame in wrong]
    # then each is refused
    assert all(results), results
