"""GET /api/v1/health: anonymous callers get a cached status and cause no worker ping; staff and the health token
get the details."""

from __future__ import annotations

import threading

import pytest
from django.test import Client

from flowrunner import health
from tests.conftest import PASSWORD
from tests.helpers import basic

URL = "/api/v1/health"
TOKEN = "health-token-for-the-load-balancer"


@pytest.fixture
def probes(monkeypatch, settings):
    """Counts of the checks /health makes (database, broker, worker pings), the checks themselves faked."""
    settings.FLOWRUNNER_HEALTH_TOKEN = TOKEN
    calls = {"database": 0, "broker": 0, "ping": 0}
    state = {"database": True}

    def database_ok():
        calls["database"] += 1
        return state["database"]

    def broker_ok():
        calls["broker"] += 1
        return True

    def ping(timeout):
        calls["ping"] += 1
        return [{"w1@host": {"ok": "pong"}}, {"w2@host": {"ok": "pong"}}]

    monkeypatch.setattr(health, "_database_ok", database_ok)
    monkeypatch.setattr(health, "_broker_ok", broker_ok)
    monkeypatch.setattr("flowrunner.celery.app.control.ping", ping)
    health.anonymous_status.forget()
    yield calls, state
    health.anonymous_status.forget()


def test_health_anonymous_gets_only_the_status(probes):
    # given no credentials / when /health is called / then only the status, no worker count
    response = Client().get(URL)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_health_1000_anonymous_calls_ping_no_worker_and_check_once_per_period(probes, monkeypatch):
    # given a clock that only moves when the test says so
    calls, _ = probes
    now = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: now[0])
    client = Client()
    # when 1,000 anonymous calls arrive within one period
    answers = {client.get(URL).content for _ in range(1000)}
    # then they all get the status, no worker was pinged, the database and broker were checked once
    assert answers == {b'{"status":"ok"}'}
    assert calls == {"database": 1, "broker": 1, "ping": 0}
    # when the period has passed / then the next call checks again, once
    now[0] += health.STATUS_TTL
    client.get(URL)
    client.get(URL)
    assert calls == {"database": 2, "broker": 2, "ping": 0}


def test_health_anonymous_status_is_503_when_the_database_is_down(probes):
    # given an unreachable database / when called anonymously / then 503 with the status only
    _, state = probes
    state["database"] = False
    response = Client().get(URL)
    assert response.status_code == 503 and response.json() == {"status": "degraded"}


def test_health_staff_get_the_details_fresh_on_every_call(probes, member):
    # given a staff user signed in (as to the admin)
    calls, _ = probes
    _, user = member
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    # when /health is called twice / then the details, with a ping each time
    for _ in range(2):
        response = client.get(URL)
        assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "workers": 2}
    assert calls["ping"] == 2


def test_health_a_member_who_is_not_staff_gets_only_the_status(probes, member):
    # given an ordinary member with Basic credentials / when called / then only the status and no ping
    calls, _ = probes
    client = Client(HTTP_AUTHORIZATION=basic(member[1].username, PASSWORD))
    assert client.get(URL).json() == {"status": "ok"}
    assert calls["ping"] == 0


def test_health_the_health_token_gets_the_details_and_a_wrong_one_only_the_status(probes, db):
    # given the configured health token, a wrong one, and a wrong password
    calls, _ = probes
    right = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get(URL)
    wrong = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}x").get(URL)
    bad_password = Client(HTTP_AUTHORIZATION=basic("nobody", "wrong-password")).get(URL)
    # then the right one sees the worker count; the others are answered as anonymous callers, without a ping
    assert right.json() == {"status": "ok", "database": "ok", "broker": "ok", "workers": 2}
    assert (wrong.status_code, wrong.json()) == (200, {"status": "ok"})
    assert (bad_password.status_code, bad_password.json()) == (200, {"status": "ok"})
    assert calls["ping"] == 1


def test_health_failed_credentials_still_count_towards_the_throttle(probes, db, settings):
    # given a limit of two failed authentications per client
    settings.FLOWRUNNER_AUTH_FAILURE_LIMIT = 2
    client = Client(HTTP_AUTHORIZATION="Bearer not-a-token")
    # when a client keeps presenting a wrong token / then after the limit it is throttled like anywhere else
    assert [client.get(URL).status_code for _ in range(3)] == [200, 200, 429]


def test_health_timed_value_computes_once_for_many_threads_at_once():
    # given a slow computation asked for by 20 threads at the same moment
    started = threading.Barrier(20)
    computed = []

    def compute():
        computed.append(1)
        threading.Event().wait(0.05)
        return "value"

    value = health.TimedValue(compute, ttl=60)
    results = []

    def ask():
        started.wait()
        results.append(value.get())

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then it ran once and everyone got its value
    assert computed == [1] and results == ["value"] * 20


def test_health_details_say_which_of_database_and_broker_is_down(probes, monkeypatch):
    # given a reachable database and an unreachable broker
    calls, _ = probes
    monkeypatch.setattr(health, "_broker_ok", lambda: False)
    # when the health token asks
    response = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get(URL)
    # then the service is degraded but up (200), the broker is named, and no worker was pinged through it
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "unavailable", "workers": 0}
    assert calls["ping"] == 0


def test_health_details_are_503_when_the_database_is_down(probes):
    # given an unreachable database
    _, state = probes
    state["database"] = False
    # when the health token asks / then 503, the database named
    response = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get(URL)
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable" and response.json()["status"] == "degraded"


def test_health_an_inactive_staff_user_gets_only_the_status(probes, member):
    # given a staff user who has been deactivated, still signed in
    calls, _ = probes
    _, user = member
    user.is_staff, user.is_active = True, False
    user.save()
    client = Client()
    client.force_login(user)
    # when /health is called / then only the status, no ping
    assert client.get(URL).json() == {"status": "ok"}
    assert calls["ping"] == 0


def test_health_workers_are_zero_when_the_ping_fails(monkeypatch):
    # given a broker that refuses the ping broadcast
    def refuse(timeout):
        raise ConnectionError("broker gone")

    monkeypatch.setattr("flowrunner.celery.app.control.ping", refuse)
    # when the workers are counted / then none, without an error
    assert health._workers() == 0


@pytest.mark.django_db
def test_health_database_probe_answers_for_the_test_database():
    # given the test database / when probed / then it answers
    assert health._database_ok() is True


def test_health_database_probe_is_false_when_no_connection_comes(monkeypatch):
    # given a connection whose pool gives no connection in time
    class Pool:
        def open(self) -> None:
            pass

        def getconn(self, timeout: float):
            raise TimeoutError(f"no connection within {timeout}s")

    class Connection:
        pool = Pool()

    monkeypatch.setattr(health, "connection", Connection())
    # when probed / then it says the database is down instead of raising
    assert health._database_ok() is False


def test_health_broker_probe_is_false_when_the_broker_does_not_answer(monkeypatch):
    # given a broker connection that cannot be made
    from flowrunner.celery import app

    def unreachable():
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(app, "connection_for_write", unreachable)
    # when probed / then it says the broker is down
    assert health._broker_ok() is False
