"""Helpers that run the `flowrunner` CLI as a subprocess, so its settings load fresh from its own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def document(self) -> dict:
        return json.loads(self.stdout)

    def events(self) -> list[dict]:
        """The frames `--json-events` wrote to stderr (other stderr lines are skipped)."""
        frames = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                frames.append(json.loads(line))
        return frames


def cli_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    # pytest-django exported the test process's settings module (tests.settings): the CLI runs the real one.
    env["DJANGO_SETTINGS_MODULE"] = "flowrunner.settings"
    # The project may not be installed in the venv running the tests: import it from the source tree.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 120, stdin: str | None = None, **env: str) -> Result:
    completed = subprocess.run(
        [sys.executable, "-m", "flowrunner.cli", *args],
        cwd=cwd,
        env=cli_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def cli(tmp_path: Path):
    """`cli("run", "flow.yaml", ...)` in a scratch directory (`cli.dir`); `cli.write(name, text)` adds a file."""

    class Cli:
        dir = tmp_path

        def __call__(self, *args: str, **kwargs) -> Result:
            return run_cli(*args, cwd=tmp_path, **kwargs)

        def write(self, name: str, text: str) -> Path:
            path = tmp_path / name
            path.write_text(text)
            return path

    return Cli()
