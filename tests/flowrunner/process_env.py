"""The environment of a fresh FlowRunner process in a test: none of the caller's FLOWRUNNER_* variables."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fresh_environment(tmp_path: Path, **env: str) -> dict[str, str]:
    """os.environ without FLOWRUNNER_*, then the settings module, no .env, keys of its own and `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUNNER_")}
    environment.update(
        DJANGO_SETTINGS_MODULE="flowrunner.settings",
        PYTHONPATH=str(REPO),
        FLOWRUNNER_ENV_FILE=os.devnull,
        FLOWRUNNER_DEV_KEYS_FILE=str(tmp_path / "keys.json"),
        **env,
    )
    return environment
