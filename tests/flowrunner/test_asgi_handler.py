"""The ASGI handler: Django's middleware chain and views run in the sync thread in one go, answering as before."""

from __future__ import annotations

import json
import threading
from inspect import iscoroutinefunction

from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator

from flowrunner.asgi import django_asgi_app
from flowrunner.asgi_handler import RequestThreads, SyncChainASGIHandler


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


def _get(path: str = "/api/v1/flows") -> dict:
    communicator = HttpCommunicator(django_asgi_app, "GET", path, headers=[(b"host", b"localhost")])
    return async_to_sync(communicator.get_response)(timeout=10)


def test_asgi_handler_serves_request_after_request_on_one_kept_thread(monkeypatch):
    # given a record of the thread of each request's chain, and of its request_started and request_finished
    from django.core import signals

    seen: list[tuple[str, int]] = []
    chain = django_asgi_app._middleware_chain

    def recording_chain(request):  # noqa: ANN001, ANN202
        seen.append(("chain", threading.get_ident()))
        return chain(request)

    def started(**_):  # noqa: ANN003, ANN202
        seen.append(("started", threading.get_ident()))

    def finished(**_):  # noqa: ANN003, ANN202
        seen.append(("finished", threading.get_ident()))

    monkeypatch.setattr(django_asgi_app, "_middleware_chain", recording_chain)
    signals.request_started.connect(started, dispatch_uid="test-started")
    signals.request_finished.connect(finished, dispatch_uid="test-finished")
    try:
        # when two requests arrive one after the other
        first, second = _get(), _get()
    finally:
        signals.request_started.disconnect(dispatch_uid="test-started")
        signals.request_finished.disconnect(dispatch_uid="test-finished")
    # then both were answered, each with its signals on its chain's thread (the database connection goes back to
    # the pool from the thread that used it), and the second on the first one's thread, kept for it
    assert first["status"] == second["status"] == 401
    assert [step for step, _ in seen] == ["started", "chain", "finished"] * 2
    assert len({thread for _, thread in seen}) == 1
    assert seen[0][1] != threading.get_ident()


def test_asgi_handler_threads_lend_a_new_one_when_none_is_idle_and_keep_at_most_max_idle():
    # given an empty set of request threads that keeps at most two idle
    threads = RequestThreads(max_idle=2)
    # when three requests run at once and then all end
    lent = [threads.acquire() for _ in range(3)]
    for executor in lent:
        threads.release(executor)
    # then each got a thread of its own, two are kept, and the next request gets the last kept
    assert len({id(executor) for executor in lent}) == 3
    assert threads.idle == 2
    assert threads.acquire() is lent[1]
    assert lent[2]._shutdown is True and lent[0]._shutdown is False


def test_asgi_handler_never_lends_again_a_thread_whose_request_was_cancelled(monkeypatch):
    # given a view that is still running when its request is cancelled (daphne gives up on an app whose client
    # left), and a record of the connection clean-up its thread runs afterwards
    import asyncio

    from flowrunner import asgi_handler

    release, in_view, cleaned = threading.Event(), threading.Event(), threading.Event()
    chain = django_asgi_app._middleware_chain

    def stuck_chain(request):  # noqa: ANN001, ANN202
        in_view.set()
        release.wait(10)
        return chain(request)

    monkeypatch.setattr(django_asgi_app, "_middleware_chain", stuck_chain)
    monkeypatch.setattr(asgi_handler, "close_old_connections", cleaned.set)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/flows",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
    }

    async def scenario() -> tuple[list, object]:
        messages = asyncio.Queue()
        await messages.put({"type": "http.request", "body": b"", "more_body": False})
        app = asyncio.ensure_future(django_asgi_app(scope, messages.get, lambda message: asyncio.sleep(0)))
        await asyncio.get_running_loop().run_in_executor(None, in_view.wait, 10)
        # when the app is cancelled with its view still running
        app.cancel()
        await asyncio.gather(app, return_exceptions=True)
        return list(django_asgi_app.threads._idle), app

    idle_before = set(map(id, django_asgi_app.threads._idle))
    idle_after, _ = async_to_sync(scenario)()
    # then that thread's executor was not put back for another request
    assert {id(executor) for executor in idle_after} <= idle_before
    # and once the view ends, the thread hands its database connection back
    release.set()
    assert cleaned.wait(10)
