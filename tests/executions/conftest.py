"""Fixtures of the executions tests: the in-memory channel layer of the consumer's unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def in_memory_layer(settings):
    """The consumer's tests run the ASGI app in this process: an in-memory layer, no Redis groups shared with
    other tests."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
