"""The demo account of `make run` / `flowrunner serve --demo`: created once, given the example flows."""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

DEMO_USERNAME = "demo"
# The examples' secrets (examples/README.md); demo values, set only when the account has none of that key.
DEMO_SECRETS = {"API_KEY": "demo-api-key-0123456789", "DB_PASSWORD": "demo-db-password-4321"}


@dataclass
class DemoResult:
    username: str
    account_id: str
    password: str | None = None  # only when the account was created by this call
    loaded: list[str] = field(default_factory=list)
    examples_dir: Path | None = None


def examples_dir() -> Path | None:
    """`examples/` of the source tree (an editable install); a wheel does not ship it."""
    path = Path(settings.BASE_DIR) / "examples"
    return path if path.is_dir() else None


def demo_setup(*, directory: Path | None = None) -> DemoResult:
    """Create the demo user + account (once) and load every example flow it does not have yet (by name)."""
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from accounts.selectors import account_for_user, user_by_username
    from accounts.services import account_signup

    user = user_by_username(DEMO_USERNAME)
    password = None
    if user is None:
        password = secrets.token_urlsafe(12)
        account, user = account_signup(username=DEMO_USERNAME, password=password, account_name="Demo")
    else:
        account = account_for_user(user)
    _ensure_secrets(account)
    directory = directory or examples_dir()
    loaded = _load_examples(account, user, directory) if directory else []
    return DemoResult(DEMO_USERNAME, str(account.id), password, loaded, directory)


def _ensure_secrets(account) -> None:  # noqa: ANN001
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from accounts.selectors import secret_list
    from accounts.services import secret_set

    present = set(secret_list(account=account).values_list("key", flat=True))
    for key, value in DEMO_SECRETS.items():
        if key not in present:
            secret_set(account=account, key=key, value=value)


def _load_examples(account, user, directory: Path) -> list[str]:  # noqa: ANN001
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from flows.dsl.spec import FlowValidationError
    from flows.selectors import flow_list
    from flows.services import flow_create, flow_parse

    have = set(flow_list(account=account).values_list("name", flat=True))
    loaded = []
    for path in sorted(directory.glob("*.yaml")):
        content = path.read_text(encoding="utf-8")
        try:
            name = flow_parse(content=content).name
            if name in have:
                continue
            flow = flow_create(account=account, user=user, content=content)
        except FlowValidationError as exc:  # a broken example must not stop the server from starting
            print(f"warning: {path.name} not loaded: {exc}", file=sys.stderr)
            continue
        have.add(name)
        loaded.append(f"{flow.id}  ({path.name})")
    return loaded


def print_demo(result: DemoResult, *, base_url: str = "http://127.0.0.1:8000") -> None:
    if result.password:
        print(
            "\n"
            "  Demo account created. The password is shown this once:\n"
            f"    username: {result.username}\n"
            f"    password: {result.password}\n"
            f"  Try: curl -u {result.username}:{result.password} {base_url}/api/v1/flows\n"
            "  (forgot it? python manage.py changepassword demo)\n",
            flush=True,
        )
    else:
        print(f"Demo account: {result.username} (password shown when it was created)", flush=True)
    for line in result.loaded:
        print(f"  loaded example flow {line}", flush=True)
