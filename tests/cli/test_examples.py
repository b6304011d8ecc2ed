"""The example flows fit any local setup: nothing in them is tied to one machine's port."""

from __future__ import annotations

import json

import pytest
from py_mini_racer import MiniRacer

from flows.dsl.parser import parse_flow
from tests.cli.conftest import EXAMPLES
from workers.templating import render


def rendered_url(input: dict) -> str:
    """The `call_api` URL of examples/http_with_secret.yaml, rendered for `input` as a worker renders it."""
    spec = parse_flow((EXAMPLES / "http_with_secret.yaml").read_text())
    context = MiniRacer()
    context.eval(f"var input = {json.dumps(input)};")
    return render(spec.nodes["call_api"].params["url"], lambda expression: context.eval(f"({expression})"))


@pytest.mark.parametrize(
    ("input", "url"),
    [
        ({}, "http://127.0.0.1:8000/api/v1/health"),
        ({"port": 8080}, "http://127.0.0.1:8080/api/v1/health"),
        ({"url": "https://api.example/ping"}, "https://api.example/ping"),
    ],
)
def test_examples_http_with_secret_calls_the_port_or_url_of_the_input(input, url):
    # given the example's URL template / when rendered for an input / then the port or URL given is called
    assert rendered_url(input) == url
