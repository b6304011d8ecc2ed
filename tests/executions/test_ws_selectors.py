"""Stored-event reads shared by the sockets of one process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from executions import ws_selectors


@pytest.fixture
def counted(monkeypatch):
    calls: list[dict[str, Any]] = []

    async def read(**kwargs: Any) -> list[dict[str, Any]]:
        calls.append(kwargs)
        await asyncio.sleep(0.05)
        return [{"seq": kwargs["after"] + 1}]

    monkeypatch.setattr(ws_selectors, "events_between", read)
    monkeypatch.setattr(ws_selectors, "_shared", {})
    return calls


def _read(after: int) -> Any:
    return ws_selectors.events_between_shared(account_id="a", execution_id="e", after=after, before=99)


def test_ws_selectors_concurrent_identical_reads_share_one_query(counted):
    # given no read in flight
    async def scenario() -> list[list[dict[str, Any]]]:
        # when fifty sockets ask for the same events at once, and one asks for others
        return await asyncio.gather(*(_read(3) for _ in range(50)), _read(7))

    results = async_to_sync(scenario)()
    # then two queries ran, and every socket got its answer
    assert len(counted) == 2
    assert results[:50] == [[{"seq": 4}]] * 50 and results[50] == [{"seq": 8}]


def test_ws_selectors_a_result_is_read_again_once_it_is_old(counted, monkeypatch):
    # given a read done a moment ago, and results reused for no time at all
    monkeypatch.setattr(ws_selectors, "SHARED_FOR", 0.0)

    async def scenario() -> None:
        await _read(3)
        # when the same read is asked again
        await _read(3)

    async_to_sync(scenario)()
    # then it queried again
    assert len(counted) == 2


@pytest.mark.django_db(transaction=True)
def test_ws_selectors_last_seqs_answers_each_execution_once_and_stays_in_its_account(member, other_member):
    # given two executions of one account and one of another
    from tests.executions.test_consumer import move, start

    mine = [async_to_sync(start)(*member) for _ in range(2)]
    theirs = async_to_sync(start)(*other_member)
    async_to_sync(move)(mine[1].id, "running")
    account = str(member[0].id)
    keys = [(account, str(execution.id)) for execution in (*mine, theirs)]
    # when one read asks for all three as this account
    seqs = async_to_sync(ws_selectors.last_seqs)(keys=keys)
    # then it answers each of the account's executions with its last seq, and nothing for the other account's
    mine[0].refresh_from_db()
    mine[1].refresh_from_db()
    assert seqs == {keys[0]: mine[0].last_event_seq, keys[1]: mine[1].last_event_seq}
    assert mine[1].last_event_seq > mine[0].last_event_seq
