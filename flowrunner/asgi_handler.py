"""Django's ASGI handler with the middleware chain and views run as under WSGI: one thread hop per request, on a
thread kept for the next request."""

# Under ASGI Django builds an async middleware chain. Every middleware written as sync methods (all of
# Django's own: security, sessions, CSRF, auth, messages, ...) then runs each of its process_request and
# process_response in the sync thread and comes back to the event loop, and the sync view makes one more
# trip: about fifteen loop ↔ thread hand-offs per request. FlowRunner's views and middleware are all sync, so
# the whole chain runs in the sync thread in one go (an async view, should one appear, is still run by
# Django's sync handler through async_to_sync).
#
# Django also gives every request a thread-sensitive context of its own, and so a new thread: per request a
# thread was started, and everything a thread keeps (its database wrapper, Celery's result backend client) was
# built again. Here each request borrows a one-thread executor that served an earlier one, as a WSGI server's
# worker threads serve request after request; the request's signals (request_started, request_finished: the
# database connection goes back to the pool) run on that thread too.

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponseBase

# Threads kept for later requests; beyond this many idle ones a returned thread is let go. As many requests
# run at once as before: a request that finds none idle gets a new thread.
MAX_IDLE_REQUEST_THREADS = 16


class RequestThreads:
    """One-thread executors lent to requests (on the event loop's thread only) and kept for the next."""

    def __init__(self, max_idle: int = MAX_IDLE_REQUEST_THREADS) -> None:
        self.max_idle = max_idle
        self._idle: deque[ThreadPoolExecutor] = deque()

    def acquire(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()  # the most recently used: its thread is the likeliest still warm
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowrunner-request")

    def release(self, executor: ThreadPoolExecutor) -> None:
        """Keep an executor whose request ran to its end (its thread is idle) for the next request."""
        if len(self._idle) < self.max_idle:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    def retire(self, executor: ThreadPoolExecutor) -> None:
        """Let go of an executor whose request was cancelled or failed: its thread may still be running the view
        (a thread cannot be interrupted), so it is never lent again. Once the view is done the thread gives its
        database connection back to the pool (the request's own request_finished may have been dropped with the
        cancellation), then ends."""
        executor.submit(close_old_connections)
        executor.shutdown(wait=False)

    @property
    def idle(self) -> int:
        return len(self._idle)


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        executor = self.threads.acquire()
        ended = False
        try:
            # Outermost: Django's own context inside this one then uses this executor.
            async with ThreadSensitiveContext(executor=executor):
                await super().__call__(scope, receive, send)
            # Django's handler waits for every call it sent to the thread (the view, the response's close and
            # request_finished, even after a client disconnect), so a normal return leaves the thread idle.
            ended = True
        finally:
            if ended:
                self.threads.release(executor)
            else:  # cancelled (daphne gives up on an app some seconds after its client left) or failed
                self.threads.retire(executor)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
