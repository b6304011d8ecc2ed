"""PostgreSQL down: a real daphne pointed at a port nothing listens on answers 503 within 2 s, in the envelope."""

from __future__ import annotations

import base64
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.flowrunner.process_env import REPO, fresh_environment

TOKEN = "database-down-health-token-0123"
BOUND = 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server_without_database(tmp_path: Path) -> Iterator[str]:
    """daphne serving the API with FLOWRUNNER_POSTGRES_PORT on a closed port (the shared server stays up)."""
    port = _free_port()
    environment = fresh_environment(
        tmp_path,
        FLOWRUNNER_POSTGRES_HOST="127.0.0.1",
        FLOWRUNNER_POSTGRES_PORT=str(_free_port()),
        FLOWRUNNER_HEALTH_TOKEN=TOKEN,
    )
    log = tmp_path / "daphne.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "flowrunner.asgi:application",
            ],
            cwd=REPO,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timed(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=30, **kwargs)
    return response, time.monotonic() - started


def test_database_down_health_answers_503_within_two_seconds(server_without_database):
    # given a server whose PostgreSQL does not answer
    api = server_without_database
    # when /health is asked anonymously and with the health token
    anonymous, anonymous_took = timed("GET", f"{api}/health")
    detailed, detailed_took = timed("GET", f"{api}/health", headers={"Authorization": f"Bearer {TOKEN}"})
    # then both answer 503 within the bound, the details naming the database
    assert (anonymous.status_code, anonymous.json()) == (503, {"status": "degraded"})
    assert detailed.status_code == 503 and detailed.json()["database"] == "unavailable"
    assert anonymous_took < BOUND and detailed_took < BOUND, (anonymous_took, detailed_took)


def test_database_down_api_calls_answer_503_in_the_envelope_within_two_seconds(server_without_database):
    # given a server whose PostgreSQL does not answer
    api = server_without_database
    basic = "Basic " + base64.b64encode(b"alice:a long passphrase").decode()
    # when an authenticated call and a login arrive
    answers = [
        timed("GET", f"{api}/flows", headers={"Authorization": basic}),
        timed("POST", f"{api}/login", json={"username": "alice", "password": "a long passphrase"}),
    ]
    # then each is a 503 in the envelope, with Retry-After, within the bound (not a bare 500 after 10 s)
    for response, took in answers:
        assert response.status_code == 503, response.text
        assert response.json() == {
            "error": {
                "code": "database_unavailable",
                "message": "The database is unavailable; try again shortly.",
                "details": None,
            }
        }
        assert response.headers["Retry-After"] == "5"
        assert took < BOUND, took
