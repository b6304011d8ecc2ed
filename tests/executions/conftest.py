"""Fixtures of the executions tests: the in-memory channel layer and a broker that is never reached."""

from __future__ import annotations

import pytest


@pytest.fixture
def in_memory_layer(settings):
    """The consumer's tests run the ASGI app in this process: an in-memory layer, no Redis groups shared with
    other tests."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def no_broker(monkeypatch):
    """Node tasks are not enqueued (their on-commit send goes nowhere)."""
    monkeypatch.setattr("executions.dispatch.send_now", lambda *args, **kwargs: None)
