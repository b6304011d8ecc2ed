"""Fault-test fixtures: this package's own live stack (package-scoped) on a private redis-server it may kill."""

# The fixture names mirror tests/integration/conftest.py (`live_stack`, `stack`, `live_db`, `make_live_user`,
# `live_user`, `live_api`); `faults_redis` is the private Redis (`url`, `kill()`, `start()`), `celery_client` a
# Celery app in the test process on that broker. The stack is torn down when the package's last test ends; while it
# runs, a session stack started earlier (tests/integration, tests/security) keeps its workers but not its beat
# (harness.py: the stack is exclusive). Sizes and timings come from the environment (tests/faults/steps.py).

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.steps import FAULT_STACK_ENV, FaultStack
from tests.integration.clients import Credentials

# The test database the children use, and the ORM-side fixtures: they resolve `live_stack` to this package's.
from tests.integration.conftest import live_database, live_db, live_user, make_live_user  # noqa: F401
from tests.services import RedisServer

_HERE = Path(__file__).resolve().parent
_STACK_KEY = pytest.StashKey[FaultStack]()


def _in_faults(item: pytest.Item) -> bool:
    return _HERE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not _in_faults(item):
            continue
        item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("django_db") is not None:
            raise pytest.UsageError(f"{item.nodeid}: fault tests must not use django_db; request `live_db`")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    stack = item.config.stash.get(_STACK_KEY, None)
    if report.failed and stack is not None and _in_faults(item):
        report.sections.append(("faults stack logs (tails)", stack.logs_report(lines=60)))


@pytest.fixture(scope="package")
def live_stack_options() -> dict:
    """Shape of this package's stack: one worker (`w1`), beat, and the fast-recovery environment."""
    return {"workers": 1, "beat": True, "env": dict(FAULT_STACK_ENV)}


@pytest.fixture(scope="package")
def faults_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of our own (redis-server or valkey-server, a child on a free port, nothing persisted): tests may
    kill it."""
    with RedisServer.private(tmp_path_factory.mktemp("faults-redis")) as server:
        yield server


@pytest.fixture(scope="package")
def live_stack(
    request: pytest.FixtureRequest,
    live_database,  # noqa: F811
    django_db_blocker,
    tmp_path_factory: pytest.TempPathFactory,
    live_stack_options: dict,
    faults_redis: RedisServer,
) -> Iterator[FaultStack]:
    env = {**(live_stack_options.get("env") or {}), "FLOWRUNNER_REDIS_URL": faults_redis.url}
    stack = FaultStack.from_django_settings(
        tmp_path_factory.mktemp("faults-stack"),
        workers=live_stack_options.get("workers", 1),
        beat=live_stack_options.get("beat", True),
        extra_env=env,
    )
    stack.redis = faults_redis
    request.config.stash[_STACK_KEY] = stack
    try:
        stack.start()
        yield stack
    finally:
        stack.stop_all()
        stack.close_client()
        del request.config.stash[_STACK_KEY]


@pytest.fixture
def stack(live_stack: FaultStack) -> FaultStack:
    """The package's stack with its Redis up and every default worker running (a test may have killed them)."""
    if not live_stack.redis.alive():
        live_stack.redis.start()
    live_stack.ensure_default_workers()
    return live_stack


@pytest.fixture
def celery_client(stack: FaultStack):
    """A Celery app in the test process on the stack's broker (`send_task`, `control.ping`)."""
    return stack.client_app()


@pytest.fixture
def live_api(stack: FaultStack, live_user: Credentials) -> Iterator[httpx.Client]:  # noqa: F811
    with stack.client(auth=live_user.auth) as client:
        yield client
