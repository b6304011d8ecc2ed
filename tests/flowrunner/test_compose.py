"""docker-compose.yml, read (Docker does not run in the test suite): workers scale and share no files with web."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FLOWRUNNER_SERVICES = ("web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _mounts(service: dict) -> set[str]:
    return {str(volume).split(":")[0] for volume in service.get("volumes") or []}


def test_compose_worker_scales(compose):
    # Given the worker service
    worker = compose["services"]["worker"]
    # Then nothing in it is unique per machine: no fixed name, no published port, no explicit node name
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert not any(arg in ("-n", "--hostname") for arg in worker["command"])
    # and it runs the supervised worker
    assert worker["command"][:2] == ["flowrunner", "worker"]


def test_compose_worker_shares_no_filesystem_with_web(compose):
    # Given the services' mounts
    services = compose["services"]
    # Then the worker mounts nothing, and no FlowRunner service shares a volume with another
    assert _mounts(services["worker"]) == set()
    seen: dict[str, str] = {}
    for name in FLOWRUNNER_SERVICES:
        for volume in _mounts(services[name]):
            assert volume not in seen, f"{name} and {seen[volume]} share the volume {volume}"
            seen[volume] = name


def test_compose_keys_are_required_and_servers_are_service_names(compose):
    # Given what every FlowRunner service's environment says
    for name in FLOWRUNNER_SERVICES:
        environment = compose["services"][name]["environment"]
        # Then both keys come from .env and compose refuses to start without them (no per-container dev keys)
        for key in ("FLOWRUNNER_ENCRYPTION_KEY", "FLOWRUNNER_SECRET_KEY"):
            assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", environment[key]), (name, environment[key])
        assert "FLOWRUNNER_DEV_KEYS_FILE" not in environment
        # and the servers are reached over the compose network by service name
        assert environment["FLOWRUNNER_POSTGRES_HOST"] == "postgres"
        assert environment["FLOWRUNNER_REDIS_URL"].startswith("redis://redis:")
        assert "network_mode" not in compose["services"][name]


def test_compose_every_service_restarts(compose):
    # Then every service comes back after a crash; only `docker compose stop` is final
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
    assert compose["services"]["worker"].get("stop_grace_period")
