"""Fixtures that run FlowRunner as real processes (daphne + Celery workers + beat) for integration tests.

- `live_stack` (session): the running stack, a `harness.LiveStack` (base_url, api_url, ws_url, env,
  client(), start_worker(), kill_worker(), stop_worker(), wait_healthy(), logs_report(), stop_all()).
- `stack` (function): the same object, after restarting any default worker an earlier test killed.
- `live_db` (function): direct ORM access in autocommit (no flush afterwards: live workers may still write).
- `live_user` / `make_live_user` (function): an account + user committed through the ORM, as
  `clients.Credentials` (`.auth` for httpx, `.headers` for websockets, `.account_id`).
- `live_api` (function): an httpx client on `/api/v1`, authenticated as `live_user`.

Override `live_stack_options` in a deeper conftest to change the number of workers, beat, or the children's
environment (e.g. `{"env": {"FLOWRUNNER_STALE_AFTER": "3s"}}`).

Every test under tests/integration (or using `live_stack`) is marked `integration`; a `django_db` mark there is
an error (its flush at teardown races the live workers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.clients import Credentials, create_user_orm
from tests.integration.harness import LiveStack

_HERE = Path(__file__).resolve().parent
_STACK_KEY = pytest.StashKey[LiveStack]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        in_here = _HERE in Path(str(item.path)).resolve().parents
        if not in_here and "live_stack" not in getattr(item, "fixturenames", ()):
            continue
        item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("django_db") is not None:
            # A django_db test flushes the tables when it ends, while the live workers may still be writing
            # (a canceled run's countdown, the reaper): that TRUNCATE deadlocks. Use the `live_db` fixture.
            raise pytest.UsageError(
                f"{item.nodeid}: integration tests must not use django_db; request `live_db` for direct, "
                "autocommitted database access (the live processes see it at once)"
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    stack = item.config.stash.get(_STACK_KEY, None)
    if report.failed and stack is not None and "live_stack" in getattr(item, "fixturenames", ()):
        report.sections.append(("live stack logs (tails)", stack.logs_report(lines=60)))


@pytest.fixture(scope="session")
def live_stack_options() -> dict:
    """Shape of the session's stack; override in a deeper conftest."""
    return {
        "workers": int(os.environ.get("FLOWRUNNER_IT_WORKERS", "1")),
        "beat": True,
        "env": {},
    }


@pytest.fixture(scope="session")
def live_database(django_db_setup, django_db_blocker) -> Iterator[None]:
    """The test database the live processes use.

    pytest-django creates it only when some collected test is marked django_db; integration tests are not (a
    django_db test flushes at teardown, racing the live workers), so when no unit test asked, create it here.
    """
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    created = None
    if not connections["default"].settings_dict["NAME"].startswith("test_"):
        with django_db_blocker.unblock():
            created = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    if created is not None:
        with django_db_blocker.unblock():
            teardown_databases(created, verbosity=0)


def own_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    options: dict,
    *,
    reuse: bool = False,
) -> Iterator[LiveStack]:
    """Start a stack shaped by `options` (`workers`, `beat`, `env`), registered in the session's stash for the
    log report and for other packages, and stop it afterwards; with `reuse`, the stack the session already runs
    instead, if there is one (its owner stops it)."""
    existing = request.config.stash.get(_STACK_KEY, None)
    if reuse and existing is not None:
        yield existing
        return
    stack = LiveStack.from_django_settings(
        tmp_path_factory.mktemp(name),
        workers=options.get("workers", 1),
        beat=options.get("beat", True),
        extra_env=options.get("env") or {},
    )
    request.config.stash[_STACK_KEY] = stack
    try:
        stack.start()
        yield stack
    finally:
        stack.stop_all()
        if request.config.stash.get(_STACK_KEY, None) is stack:
            del request.config.stash[_STACK_KEY]


@pytest.fixture(scope="session")
def live_stack(
    request: pytest.FixtureRequest,
    live_database,
    django_db_blocker,
    tmp_path_factory: pytest.TempPathFactory,
    live_stack_options: dict,
) -> Iterator[LiveStack]:
    """daphne + workers (+ beat) on the pytest-django test database; torn down at session end."""
    # Depending on live_database orders teardown: the children (and their connections) are gone before
    # the test database is dropped.
    yield from own_stack(request, tmp_path_factory, "live-stack", live_stack_options)


@pytest.fixture
def stack(live_stack: LiveStack) -> LiveStack:
    """The session's stack with every default worker running again (an earlier test may have killed one)."""
    live_stack.ensure_default_workers()
    return live_stack


@pytest.fixture
def live_db(live_stack: LiveStack, django_db_blocker) -> Iterator[None]:
    """Direct ORM access to the live stack's database, in autocommit: every write is visible to the children
    at once, and nothing is flushed afterwards (each test makes its own account, so tests stay apart)."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def make_live_user(live_stack: LiveStack, live_db) -> Callable[..., Credentials]:
    """Factory: `make_live_user(username=None, password=None)` → Credentials of a new account's user."""
    return create_user_orm


@pytest.fixture
def live_user(make_live_user: Callable[..., Credentials]) -> Credentials:
    return make_live_user()


@pytest.fixture
def live_api(live_stack: LiveStack, live_user: Credentials) -> Iterator[httpx.Client]:
    with live_stack.client(auth=live_user.auth) as client:
        yield client
