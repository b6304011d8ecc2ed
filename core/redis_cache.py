"""Django's Redis cache with one client, and so one connection pool, per process instead of one per request."""

# Django keeps a cache instance per async context, and every ASGI request is a context of its own: with the
# stock backend each request built a client with a fresh connection pool and opened a new TCP connection to Redis
# for its first cache call (the Basic-auth lookup), left for the garbage collector to close.

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[str, RedisCacheClient] = {}
_lock = threading.Lock()


class SharedClientRedisCache(RedisCache):
    """RedisCache whose client is shared by every instance with the same servers and options (redis-py's
    connection pool is thread-safe)."""

    @cached_property
    def _cache(self) -> Any:
        key = repr((self._class, self._servers, sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
