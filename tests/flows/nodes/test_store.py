"""The store kind: each operation against the account store, the output shape, and its params."""

import pytest

from flows.nodes.base import PermanentNodeError
from flows.nodes.store import StoreKind


def run(ctx):
    return StoreKind().run(ctx)


def test_store_set_then_get_round_trips_a_value(ctx_for):
    # given a set of a rendered value, then a get on the same store
    ctx = ctx_for(
        "store",
        {"operation": "set", "key": "user:${input.id}", "value": {"n": "${input.n}"}},
        {"id": 7, "n": 3},
    )
    # when both run
    stored = run(ctx)
    ctx.node = ctx.node.__class__(id="g", type="store", params={"operation": "get", "key": "user:7"})
    fetched = run(ctx)
    # then set answers the value stored and get reads it back, both under "value"
    assert stored.output == {"value": {"n": 3}}
    assert fetched.output == {"value": {"n": 3}} and fetched.action == "success"
    assert ctx.store.data == {"user:7": {"n": 3}}


def test_store_get_missing_key_gives_default_or_null(ctx_for):
    # given an empty store / when get runs with and without a default / then the default, else null
    assert run(ctx_for("store", {"operation": "get", "key": "k", "default": 0})).output == {"value": 0}
    assert run(ctx_for("store", {"operation": "get", "key": "k"})).output == {"value": None}


def test_store_output_key_names_the_result(ctx_for):
    # given output_key / when run / then the result lands under that name
    ctx = ctx_for("store", {"operation": "increment", "key": "hits", "output_key": "hit_count"})
    assert run(ctx).output == {"hit_count": 1}


def test_store_increment_adds_by_or_amount(ctx_for):
    # given a counter incremented by the default, by `by` and by the Go spelling `amount`
    ctx = ctx_for("store", {"operation": "increment", "key": "c"})
    run(ctx)
    ctx.node = ctx.node.__class__(
        id="n", type="store", params={"operation": "increment", "key": "c", "by": 2.5}
    )
    run(ctx)
    ctx.node = ctx.node.__class__(
        id="n", type="store", params={"operation": "increment", "key": "c", "amount": 10}
    )
    # when run / then the counter is the sum
    assert run(ctx).output == {"value": 13.5}


def test_store_increment_of_text_fails_permanently(ctx_for):
    # given a key holding text / when incremented / then a permanent error
    ctx = ctx_for("store", {"operation": "increment", "key": "name"})
    ctx.store.set("name", "bob")
    with pytest.raises(PermanentNodeError, match="cannot increment"):
        run(ctx)


def test_store_delete_reports_whether_the_key_existed(ctx_for):
    # given one stored key / when deleted twice / then true, then false
    ctx = ctx_for("store", {"operation": "delete", "key": "k"})
    ctx.store.set("k", 1)
    assert run(ctx).output == {"value": True}
    assert run(ctx).output == {"value": False}


def test_store_list_returns_the_keys_under_a_prefix(ctx_for):
    # given keys with two prefixes / when listed with and without prefix / then an object of matching keys
    ctx = ctx_for("store", {"operation": "list", "prefix": "user:"})
    for key, value in (("user:1", "a"), ("user:2", "b"), ("order:1", "c")):
        ctx.store.set(key, value)
    assert run(ctx).output == {"value": {"user:1": "a", "user:2": "b"}}
    ctx.node = ctx.node.__class__(id="n", type="store", params={"operation": "list"})
    assert len(run(ctx).output["value"]) == 3


def test_store_run_refuses_an_empty_rendered_key(ctx_for):
    # given a key that renders empty / when run / then a permanent error
    with pytest.raises(PermanentNodeError, match="key must not be empty"):
        run(ctx_for("store", {"operation": "get", "key": "${input.k}"}, {"k": ""}))


def test_store_validate_accepts_each_operation(param_problems):
    # given valid params for each operation / when validated / then no problem
    for params in (
        {"operation": "get", "key": "k", "default": 0, "output_key": "x"},
        {"operation": "set", "key": "k", "value": None},
        {"operation": "delete", "key": "${input.k}"},
        {"operation": "list", "prefix": ""},
        {"operation": "increment", "key": "k", "by": -1},
    ):
        assert param_problems("store", params) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("operation", "missing required parameter 'operation'")]),
        (
            {"operation": "query"},
            [("operation", "'operation' must be one of get, set, delete, list, increment, got 'query'")],
        ),
        ({"operation": "get"}, [("key", "missing required parameter 'key'")]),
        ({"operation": "set", "key": "k"}, [("", "set needs 'value'")]),
        ({"operation": "list", "key": "k"}, [("key", "'key' does not apply to list (use 'prefix')")]),
        (
            {"operation": "increment", "key": "k", "by": "two"},
            [("by", "'by' must be a number, got a string")],
        ),
        (
            {"operation": "increment", "key": "k", "by": 1, "amount": 1},
            [("amount", "give either 'by' or 'amount', not both")],
        ),
        ({"operation": "get", "key": "k", "value": 1}, [("value", "'value' applies only to set, not get")]),
        (
            {"operation": "get", "key": "k", "ttl": "1h"},
            [
                (
                    "ttl",
                    "unknown parameter 'ttl' (expected one of: amount, by, default, key, operation, "
                    "output_key, prefix, value)",
                )
            ],
        ),
    ],
)
def test_store_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each problem has its path and message
    assert param_problems("store", params) == expected
