"""The outbound HTTP and health settings, read from the environment by a fresh process as every server reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.flowrunner.process_env import REPO, fresh_environment

PRINT = (
    "from django.conf import settings; import json; print(json.dumps({name: getattr(settings, name) for name in "
    "['FLOWRUNNER_HTTP_ALLOW_PRIVATE', 'FLOWRUNNER_HTTP_ALLOWED_HOSTS', 'FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES', "
    "'FLOWRUNNER_HTTP_MAX_REDIRECTS']}))"
)


def settings_in(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Load flowrunner.settings in a new interpreter with only `env` of FlowRunner's variables."""
    environment = fresh_environment(tmp_path, **env)
    return subprocess.run(
        [sys.executable, "-c", PRINT], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
    )


def test_settings_private_networks_are_allowed_by_default_only_in_embedded_mode(tmp_path):
    # given no Redis (embedded), Redis, and Redis with the variable set
    embedded = settings_in(tmp_path)
    shared = settings_in(tmp_path, FLOWRUNNER_REDIS_URL="redis://127.0.0.1:6379/13")
    opted_in = settings_in(
        tmp_path, FLOWRUNNER_REDIS_URL="redis://127.0.0.1:6379/13", FLOWRUNNER_HTTP_ALLOW_PRIVATE="true"
    )
    # when the settings load / then embedded allows them, a shared server refuses them unless told otherwise
    assert json.loads(embedded.stdout) == {
        "FLOWRUNNER_HTTP_ALLOW_PRIVATE": True,
        "FLOWRUNNER_HTTP_ALLOWED_HOSTS": [],
        "FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES": 10485760,
        "FLOWRUNNER_HTTP_MAX_REDIRECTS": 5,
    }
    assert json.loads(shared.stdout)["FLOWRUNNER_HTTP_ALLOW_PRIVATE"] is False
    assert json.loads(opted_in.stdout)["FLOWRUNNER_HTTP_ALLOW_PRIVATE"] is True


def test_settings_allowed_hosts_take_names_wildcards_addresses_and_networks(tmp_path):
    # given one entry of each form / when loaded / then kept, lower-cased
    loaded = settings_in(
        tmp_path, FLOWRUNNER_HTTP_ALLOWED_HOSTS="API.internal, *.corp.example,10.1.2.3,fd00::/8"
    )
    assert json.loads(loaded.stdout)["FLOWRUNNER_HTTP_ALLOWED_HOSTS"] == [
        "api.internal",
        "*.corp.example",
        "10.1.2.3",
        "fd00::/8",
    ]


def test_settings_refuse_a_malformed_allowed_host_or_a_short_health_token(tmp_path):
    # given a typo in the allowlist, and a health token too short to be a secret
    typo = settings_in(tmp_path, FLOWRUNNER_HTTP_ALLOWED_HOSTS="10.0.0.0/33")
    short = settings_in(tmp_path, FLOWRUNNER_HEALTH_TOKEN="short")
    # when the settings load / then the process fails, naming the variable
    assert typo.returncode != 0
    assert (
        "FLOWRUNNER_HTTP_ALLOWED_HOSTS: '10.0.0.0/33' is not a host name, address or network" in typo.stderr
    )
    assert short.returncode != 0 and "FLOWRUNNER_HEALTH_TOKEN must be at least 16 characters" in short.stderr


SETUP_LOGGING = (
    "import django, logging; django.setup(); "
    "print(logging.getLevelName(logging.getLogger().getEffectiveLevel()))"
)


def logging_in(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Set Django up (which configures logging from the settings) in a new interpreter with `env`."""
    environment = fresh_environment(tmp_path, **env)
    return subprocess.run(
        [sys.executable, "-c", SETUP_LOGGING],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_log_level_accepts_any_case(tmp_path):
    # given the level written in lower case, mixed case, and as Python's alias `warn`
    lower = logging_in(tmp_path, FLOWRUNNER_LOG_LEVEL="debug")
    mixed = logging_in(tmp_path, FLOWRUNNER_LOG_LEVEL="Error")
    alias = logging_in(tmp_path, FLOWRUNNER_LOG_LEVEL="warn")
    # when Django configures logging / then each is the level it names, with no traceback
    assert (lower.returncode, lower.stdout.strip()) == (0, "DEBUG") and "Traceback" not in lower.stderr
    assert (mixed.returncode, mixed.stdout.strip()) == (0, "ERROR")
    assert (alias.returncode, alias.stdout.strip()) == (0, "WARNING")


def test_settings_refuse_an_unknown_log_level_naming_the_variable(tmp_path):
    # given a level logging does not know
    loaded = logging_in(tmp_path, FLOWRUNNER_LOG_LEVEL="verbose")
    # when the settings load / then the process fails with the settings' own message, naming the variable
    assert loaded.returncode != 0
    assert "FLOWRUNNER_LOG_LEVEL='verbose' is not a log level" in loaded.stderr
    assert "Unknown level" not in loaded.stderr
