"""The ASGI handler: Django's middleware chain and views run in the sync thread in one go, answering as before."""

from __future__ import annotations

import json
import threading
from inspect import iscoroutinefunction

from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator

from flowrunner.asgi import django_asgi_app
from flowrunner.asgi_handler import SyncChainASGIHandler


def test_asgi_handler_builds_a_sync_middleware_chain():
    # given the web process's HTTP application / then its middleware chain is the sync one
    assert isinstance(django_asgi_app, SyncChainASGIHandler)
    assert not iscoroutinefunction(django_asgi_app._middleware_chain)


def test_asgi_handler_answers_through_every_middleware(monkeypatch):
    # given a record of the threads the middleware chain runs in
    threads: list[str] = []
    chain = django_asgi_app._middleware_chain

    def recording_chain(request):  # noqa: ANN001, ANN202
        threads.append(threading.current_thread().name)
        return chain(request)

    monkeypatch.setattr(django_asgi_app, "_middleware_chain", recording_chain)
    # when an unauthenticated API request arrives over ASGI
    communicator = HttpCommunicator(
        django_asgi_app, "GET", "/api/v1/flows", headers=[(b"host", b"localhost")]
    )
    response = async_to_sync(communicator.get_response)(timeout=10)
    # then the API's 401 envelope comes back with the middleware's headers, from one trip to a worker thread
    assert response["status"] == 401
    assert json.loads(response["body"])["error"]["code"] == "not_authenticated"
    headers = {name.decode().lower(): value.decode() for name, value in response["headers"]}
    assert headers["x-frame-options"] == "DENY"
    assert len(threads) == 1 and threads[0] != threading.main_thread().name
