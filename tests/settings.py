"""Django settings of the pytest process: flowrunner.settings with a fast password hasher and a private cache.

pytest-django loads this module (pyproject.toml's DJANGO_SETTINGS_MODULE) in the test process only. Every
FlowRunner process a test starts — the live stack's daphne, Celery workers and beat (tests/integration/processes.py),
the `flowrunner` CLI (tests/cli/conftest.py), the fresh interpreters of tests/flowrunner/process_env.py — sets
DJANGO_SETTINGS_MODULE=flowrunner.settings itself, and must: those children are the deployment under test. They
hash passwords with PBKDF2 (a test checks the stored hash), and their cache (authentication throttle, remembered
Basic credentials) and channel layer are Redis, shared between processes. Users a test writes for them are
hashed with PBKDF2 explicitly (tests/integration/clients.py), since this process only knows MD5.

The channel layer stays flowrunner.settings' Redis layer here too: the engine's unit tests broadcast through it
as a worker does; the consumer's unit tests swap in the in-memory layer (tests/executions/conftest.py).
"""

from flowrunner.settings import *  # noqa: F403

# Unit tests create many users; PBKDF2's 600k iterations would dominate their run time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Throttle counters and remembered credentials live in the cache: a private in-memory one, emptied around each
# test (tests/conftest.py), so one test never throttles the next. Clearing the Redis cache would flush the db
# the live stack uses as its broker too.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
