"""Browser-test fixtures: the integration harness's live stack (daphne + workers + beat) and a chromium.

The integration fixtures are re-exported, except `live_stack`: a second session-scoped copy would start a second
stack beside the integration one (its workers would take the integration tests' tasks). Here it is
package-scoped and reuses the integration stack when one already runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures and hooks re-exported for tests/browser
    live_api,
    live_database,
    live_db,
    live_stack_options,
    live_user,
    make_live_user,
    own_stack,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
)
from tests.integration.harness import LiveStack

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def live_stack(
    request: pytest.FixtureRequest,
    live_database,  # noqa: F811 - the integration fixture, requested by name
    django_db_blocker,
    tmp_path_factory: pytest.TempPathFactory,
    live_stack_options: dict,  # noqa: F811
) -> Iterator[LiveStack]:
    yield from own_stack(request, tmp_path_factory, "browser-stack", live_stack_options, reuse=True)


@pytest.fixture(autouse=True)
def _release_database_connection() -> Iterator[None]:
    """Give the test's pooled connection back: one still checked out when the session ends keeps the test
    database busy, and dropping it fails."""
    yield
    from django.db import connections

    connections.close_all()


@pytest.fixture(scope="package")
def chromium() -> Iterator:
    """Debian's chromium driven by Playwright (no downloaded browser)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on the main thread, so Django takes every ORM call of the
    # test (e.g. make_live_user) for one made from async code and refuses it. They are plain sync calls on
    # this thread: allow them while the browser is up.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
