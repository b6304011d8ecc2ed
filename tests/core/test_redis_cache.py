"""core.redis_cache: Django's Redis cache with one client per process, not one per request."""

from __future__ import annotations

import contextvars

from django.core.cache.backends.redis import RedisCache

from core.redis_cache import SharedClientRedisCache

URL = "redis://127.0.0.1:1/9"  # never connected to: building a client opens no connection


def _cache_of_a_new_request(backend: type) -> object:
    # Django builds a cache instance per async context, and every ASGI request runs in one of its own
    return contextvars.Context().run(lambda: backend(URL, {})._cache)


def test_redis_cache_instances_of_two_requests_share_one_client():
    # given the stock backend, whose every instance builds its own client (and connection pool)
    assert _cache_of_a_new_request(RedisCache) is not _cache_of_a_new_request(RedisCache)
    # when two requests each build the shared-client backend
    first, second = (
        _cache_of_a_new_request(SharedClientRedisCache),
        _cache_of_a_new_request(SharedClientRedisCache),
    )
    # then both use one client
    assert first is second


def test_redis_cache_other_servers_or_options_get_their_own_client():
    # given caches of another server and of other options / then none shares the first one's client
    base = SharedClientRedisCache(URL, {})._cache
    other_server = SharedClientRedisCache("redis://127.0.0.1:2/9", {})._cache
    other_options = SharedClientRedisCache(URL, {"OPTIONS": {"db": 3}})._cache
    assert len({id(base), id(other_server), id(other_options)}) == 3
