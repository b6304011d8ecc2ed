"""The fuzzer's hooks: which "accepted negative data" reports are schemathesis' own misjudgements."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

from tests.security import schemathesis_hooks as hooks

SCHEDULES = "/api/v1/flows/{flow_id}/schedules"
RUN = "/api/v1/flows/{flow_id}/run"


@pytest.fixture(scope="module")
def document(openapi_document) -> dict:
    return openapi_document


def _case(document: dict, path: str, body, negative=(ParameterLocation.BODY,)) -> SimpleNamespace:  # noqa: ANN001
    """A generated case as the hooks see it: its operation in the document, its body, its mutated components."""
    operation = SimpleNamespace(schema=SimpleNamespace(raw_schema=document), path=path, method="POST")
    components = {location: SimpleNamespace(mode=GenerationMode.NEGATIVE) for location in negative}
    components.setdefault(ParameterLocation.BODY, SimpleNamespace(mode=GenerationMode.POSITIVE))
    return SimpleNamespace(
        operation=operation,
        media_type="application/json",
        body=body,
        meta=SimpleNamespace(components=components),
    )


def _accepted_negative_data() -> SimpleNamespace:
    return SimpleNamespace(code="ST201", message="Invalid data should have been rejected")


@pytest.mark.parametrize(
    ("path", "body", "follows"),
    [
        # what schemathesis 4.32 reported as accepted negative data: a valid interval and zone, a null callback
        (SCHEDULES, {"enabled": False, "timezone": "UTC", "interval": "24h", "callback_url": None}, True),
        (SCHEDULES, {"cron": "5 4 * * mon-fri", "timezone": "Europe/Paris", "input": {"a": [1.5]}}, True),
        (SCHEDULES, {"cron": "5 4 * * mon-fri", "interval": "1h"}, False),  # both: oneOf refuses it
        (SCHEDULES, {"interval": "every day"}, False),
        (SCHEDULES, {"interval": "500ms"}, False),  # under the documented 1s
        (SCHEDULES, {"interval": "9000h"}, False),  # over the documented 366 days
        (SCHEDULES, {"interval": "1h", "callback_url": "http://example.com:99999/x"}, False),
        (SCHEDULES, {"cron": "61 25 * * *"}, False),
        (SCHEDULES, {"interval": "1h", "timezone": "Mars/Olympus"}, False),
        (SCHEDULES, {"interval": "1h", "callback_url": "ftp://example.com/x"}, False),
        (SCHEDULES, {"interval": "1h", "extra": 1}, False),
        (RUN, {"input": {"a": 1e300}}, False),
        (RUN, {"input": {"a": "x\u0000"}}, False),
        (RUN, {"input": {"a": 1}}, True),
    ],
)
def test_schemathesis_hooks_a_body_follows_the_document_only_when_every_rule_and_format_holds(
    document, path, body, follows
):
    # given a body schemathesis generated as negative data for an operation
    case = _case(document, path, body)
    # when the hook judges it against the document, formats checked for real
    judged = hooks._body_follows_the_document(case)
    # then only a body that breaks no rule is taken for schemathesis' misjudgement (and its failure dropped)
    assert judged is follows


def test_schemathesis_hooks_drop_accepted_negative_data_only_for_a_mutated_body_that_follows_the_document(
    document,
):
    # given "accepted negative data" reports: the misjudged schedule (only its body mutated), the same body
    # when a header was mutated too (the header may be what the server should have refused), and a body that
    # really breaks the document
    valid = {"enabled": False, "timezone": "UTC", "interval": "24h", "callback_url": None}
    misjudged = _case(document, SCHEDULES, valid)
    header_too = _case(
        document, SCHEDULES, valid, negative=(ParameterLocation.BODY, ParameterLocation.HEADER)
    )
    broken = _case(document, SCHEDULES, {"interval": "24h", "timezone": "Mars/Olympus"})
    # when the hook filters them
    kept = [
        hooks.filter_failure(None, _accepted_negative_data(), case, SimpleNamespace(status_code=201))
        for case in (misjudged, header_too, broken)
    ]
    # then only the misjudgement is dropped
    assert kept == [False, True, True]


def test_schemathesis_hooks_keep_a_failure_they_cannot_judge(document):
    # given a case without a JSON body in the document (a flow's YAML, a body that is not an object)
    yaml_case = _case(document, "/api/v1/flows", "metadata: {name: x}\nnodes: {}\n")
    yaml_case.media_type = "application/yaml"
    # when judged, then neither is taken for a misjudgement: the failure stays
    assert hooks._body_follows_the_document(yaml_case) is False
    assert hooks._body_follows_the_document(_case(document, "/api/v1/nowhere", {})) is False
    # and a format the hooks have no check for counts as broken
    unknown = {
        "paths": {
            "/x": {
                "post": {
                    "requestBody": {
                        "content": {"application/json": {"schema": {"properties": {"a": {"format": "new"}}}}}
                    }
                }
            }
        }
    }
    assert hooks._body_follows_the_document(_case(unknown, "/x", {"a": "text"})) is False
    assert hooks._body_follows_the_document(_case(unknown, "/x", {})) is True
