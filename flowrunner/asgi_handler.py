"""Django's ASGI handler with the middleware chain and views run as under WSGI: one thread hop per request."""

# Under ASGI Django builds an async middleware chain. Every middleware written as sync methods (all of
# Django's own: security, sessions, CSRF, auth, messages, ...) then runs each of its process_request and
# process_response in the sync thread and comes back to the event loop, and the sync view makes one more
# trip: about fifteen loop ↔ thread hand-offs per request. FlowRunner's views and middleware are all sync, so
# the whole chain runs in the sync thread in one go (an async view, should one appear, is still run by
# Django's sync handler through async_to_sync).

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
