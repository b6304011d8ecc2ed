"""Fixtures of the accounts tests: a clean cache (throttle counters, remembered credentials) per test."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clean_cache():
    # Throttle counters and remembered credentials must not leak from one test into the next.
    cache.clear()
    yield
    cache.clear()
