"""Multi-host fixtures: worker hosts as network namespaces (tests/hosts/netns.py) around this package's stack.

web and beat run on this machine against a private redis-server; every worker runs inside a host's namespace,
under that host's name, and reaches PostgreSQL and Redis only through the host side of its veth link (a
forwarder to the local servers). `hosts` is {hostname: NetHost}; `stack.start_host_worker(name, host, queues)`
starts Celery worker `name@<hostname>` there. Skipped, with the reason, where namespaces cannot be created.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.conftest import live_api, live_db, live_user, make_live_user  # noqa: F401  (same fixtures)
from tests.faults.steps import FAULT_STACK_ENV, FaultStack
from tests.hosts import netns
from tests.integration.conftest import live_database  # noqa: F401  (the test database the children use)
from tests.integration.processes import Child
from tests.services import RedisServer

_HERE = Path(__file__).resolve().parent
_STACK_KEY = pytest.StashKey[FaultStack]()
HOSTNAMES = ["host-a", "host-b", "host-c"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    stack = item.config.stash.get(_STACK_KEY, None)
    if report.failed and stack is not None and _HERE in Path(str(item.path)).resolve().parents:
        report.sections.append(("hosts stack logs (tails)", stack.logs_report(lines=60)))


@dataclass(eq=False)
class HostsStack(FaultStack):
    """A FaultStack whose workers run on namespace hosts: `placement` maps a worker name to its NetHost."""

    placement: dict[str, netns.NetHost] = field(default_factory=dict)

    def worker_hostname(self, name: str) -> str:
        host = self.placement.get(name)
        return f"{name}@{host.hostname}" if host else super().worker_hostname(name)

    def start_host_worker(
        self, name: str, host: netns.NetHost, queues: list[str], concurrency: int = 1
    ) -> Child:
        """Worker `name` inside `host`, consuming exactly `queues`, its servers reached through the host's link."""
        self.placement[name] = host
        return self.start_worker(name, queues, concurrency=concurrency, env=host.env, default_queues=False)

    def _spawn(self, name: str, args: list[str], env=None) -> Child:  # noqa: ANN001
        host = self.placement.get(name.removeprefix("worker-")) if name.startswith("worker-") else None
        if host is None:
            return super()._spawn(name, args, env)
        # The harness runs `python <args>`: enter the namespace first, then exec the same interpreter.
        wrapped = ["-c", _ENTER, *host.wrap([sys.executable, *args])]
        return super()._spawn(name, wrapped, env)


_ENTER = "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])"


@pytest.fixture(scope="package")
def hosts() -> Iterator[dict[str, netns.NetHost]]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    created = netns.create_hosts(HOSTNAMES)
    try:
        yield {host.hostname: host for host in created}
    finally:
        netns.remove_hosts(created)


@pytest.fixture(scope="package")
def hosts_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This package's own broker (a private redis-server): nothing it queues reaches the session's workers."""
    with RedisServer.private(tmp_path_factory.mktemp("hosts-redis")) as server:
        yield server


@pytest.fixture(scope="package")
def live_stack(
    request: pytest.FixtureRequest,
    hosts: dict[str, netns.NetHost],
    live_database,  # noqa: F811
    django_db_blocker,
    tmp_path_factory: pytest.TempPathFactory,
    hosts_redis: RedisServer,
) -> Iterator[HostsStack]:
    from django.conf import settings

    env = {
        **FAULT_STACK_ENV,
        "FLOWRUNNER_REDIS_URL": hosts_redis.url,
        # Nodes of the link-cut test are busy for seconds; the default script timeout would fail them.
        "FLOWRUNNER_SCRIPT_TIMEOUT": "60s",
    }
    db = settings.DATABASES["default"]
    forwarder = netns.Forwarder()
    for host in hosts.values():
        pg_port = forwarder.add(host.host_ip, (str(db["HOST"]), int(db.get("PORT") or 5432)))
        redis_port = forwarder.add(host.host_ip, ("127.0.0.1", hosts_redis.port))
        host.env = {
            "FLOWRUNNER_POSTGRES_HOST": host.host_ip,
            "FLOWRUNNER_POSTGRES_PORT": str(pg_port),
            "FLOWRUNNER_REDIS_URL": f"redis://{host.host_ip}:{redis_port}/0",
        }
    base = FaultStack.from_django_settings(
        tmp_path_factory.mktemp("hosts-stack"), workers=0, beat=True, extra_env=env
    )
    stack = HostsStack(
        workdir=base.workdir, env=base.env, default_workers=(), beat=True, base_queues=base.base_queues
    )
    stack.redis = hosts_redis
    # A FaultStack is exclusive: the session's other stacks pause their beats (their reapers would re-drive
    # this package's node runs onto their own brokers) until it stops.
    request.config.stash[_STACK_KEY] = stack
    try:
        stack.start()
        yield stack
    finally:
        stack.stop_all()
        stack.close_client()
        forwarder.close()
        del request.config.stash[_STACK_KEY]


@pytest.fixture
def stack(live_stack: HostsStack) -> HostsStack:
    for host in live_stack.placement.values():
        host.restore()  # a failed test may have left a link down
    return live_stack
