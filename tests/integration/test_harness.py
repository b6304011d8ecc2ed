"""The harness itself: the real stack comes up, reaches PostgreSQL and Redis, and sees its workers."""

import pytest


@pytest.mark.integration
def test_live_stack_is_healthy(live_stack):
    response = live_stack.health()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "ok"
    assert body["workers"] >= 1
    # The children run on the pytest-django test database, not the developer's one.
    assert live_stack.env["FLOWRUNNER_POSTGRES_DATABASE"].startswith("test_")
