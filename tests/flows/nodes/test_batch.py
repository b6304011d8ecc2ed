"""Batch kinds: params, items, cutting into batches, processing one batch, and the join rule."""

import pytest

from flows.dsl.spec import BatchPolicy
from flows.nodes.base import PermanentNodeError
from flows.nodes.batch import BatchKind, join_batches
from flows.nodes.registry import get_kind

BATCH_KINDS = ("parallel_batch", "batch", "async_batch", "worker_pool")


# The join rule ----------------------------------------------------------------------------------------------


def test_join_batches_merges_object_outputs_in_batch_order():
    # given object outputs arriving out of order
    outputs = [
        (1, {"rows": [3, 4], "count": 2, "last": "b1", "ok": True}),
        (0, {"rows": [1, 2], "count": 2, "last": "b0", "ok": False}),
        (2, {"rows": [5], "count": 1, "last": "b2", "extra": {"k": 1}}),
    ]
    # when joined
    joined = join_batches(outputs, failed_batches=[], failed_items=0, batch_count=3)
    # then lists concatenate in batch order, numbers add, other values: last batch wins
    assert joined == {
        "rows": [1, 2, 3, 4, 5],
        "count": 5,
        "last": "b2",
        "ok": True,
        "extra": {"k": 1},
        "failed_items": 0,
        "failed_batches": [],
        "batch_count": 3,
    }


def test_join_batches_treats_booleans_as_values_not_numbers():
    # given boolean fields / when joined / then the last batch wins instead of adding them up
    joined = join_batches([(0, {"ok": True}), (1, {"ok": True}), (2, {"ok": False})], [], 0, 3)
    assert joined["ok"] is False


def test_join_batches_adds_floats_and_ints():
    # given mixed numbers / when joined / then they are summed
    assert join_batches([(0, {"sum": 1}), (1, {"sum": 2.5})], [], 0, 2)["sum"] == 3.5


def test_join_batches_lets_the_last_batch_win_on_mismatched_types():
    # given a key that is a list in one batch and a number in another / when joined / then last batch wins
    joined = join_batches([(0, {"x": [1]}), (1, {"x": 5}), (2, {"y": 1}), (3, {"y": [2]})], [], 0, 4)
    assert (joined["x"], joined["y"]) == (5, [2])


def test_join_batches_concatenates_non_object_outputs_under_results():
    # given batches that returned their lists (the default processor), a scalar and nothing
    outputs = [(2, ["e"]), (0, ["a", "b"]), (1, ["c", "d"]), (3, "f"), (4, None)]
    # when joined / then the items come back in order under `results`
    joined = join_batches(outputs, failed_batches=[], failed_items=0, batch_count=5)
    assert joined["results"] == ["a", "b", "c", "d", "e", "f"]


def test_join_batches_reports_failures_and_overrides_fake_bookkeeping():
    # given two failed batches (5 items) and a batch output that tries to set the bookkeeping keys
    outputs = [(0, {"failed_items": 99, "batch_count": 1, "n": 1})]
    # when joined
    joined = join_batches(outputs, failed_batches=[3, 1], failed_items=5, batch_count=4)
    # then the join's own counts win and failed batches are listed by index
    assert joined == {"n": 1, "failed_items": 5, "failed_batches": [1, 3], "batch_count": 4}


def test_join_batches_is_reachable_through_each_batch_kind():
    # given the engine's call path / when joining through a kind / then it is the same pure function
    for name in BATCH_KINDS:
        assert get_kind(name).join_batches([(0, [1])], [], 0, 1) == join_batches([(0, [1])], [], 0, 1)


def test_join_batches_of_nothing_is_just_the_bookkeeping():
    # given no successful batch / when joined / then only the counts remain
    assert join_batches([], [0, 1], 4, 2) == {"failed_items": 4, "failed_batches": [0, 1], "batch_count": 2}


def test_join_batches_sums_the_go_complex_flow_outputs():
    # given the Go complex flow's processor outputs (batch_results, batch_size, success_count)
    outputs = [(i, {"batch_results": [{"id": i}], "batch_size": 3, "success_count": 3}) for i in range(3)]
    # when joined / then results concatenate and sizes add up
    joined = join_batches(outputs, [], 0, 3)
    assert joined["batch_results"] == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert (joined["batch_size"], joined["success_count"]) == (9, 9)


# Items, batches, processing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BATCH_KINDS)
def test_batch_kinds_are_registered_as_batch_kinds(name):
    # given each batch kind name / when looked up / then it is a batch kind that run() refuses
    kind = get_kind(name)
    assert isinstance(kind, BatchKind) and kind.is_batch and kind.name == name
    with pytest.raises(NotImplementedError):
        kind.run(None)


def test_batch_items_default_to_the_document_items(ctx_for):
    # given no params.items / when items are resolved / then the document's `items` is used
    assert get_kind("parallel_batch").items(ctx_for("parallel_batch", {}, {"items": [1, 2]})) == [1, 2]


def test_batch_items_from_an_expression_a_key_a_path_or_a_list(ctx_for):
    # given each way to name the items
    kind = get_kind("parallel_batch")
    document = {"rows": [1], "data": {"list": [2, 3]}, "items": ["no"]}
    # when resolved / then each gives its list
    assert kind.items(ctx_for("parallel_batch", {"items": "${input.data.list}"}, document)) == [2, 3]
    assert kind.items(ctx_for("parallel_batch", {"items": "rows"}, document)) == [1]
    assert kind.items(ctx_for("parallel_batch", {"items": "data.list"}, document)) == [2, 3]
    assert kind.items(ctx_for("parallel_batch", {"items": [4, "${input.rows[0]}"]}, document)) == [4, 1]


@pytest.mark.parametrize(
    ("params", "document", "message"),
    [
        ({}, {}, "the document has no 'items'"),
        ({"items": "missing"}, {}, "the document has no 'missing'"),
        ({"items": "rows"}, {"rows": {"a": 1}}, "must be a list, got a mapping"),
        ({"items": "${input.n}"}, {"n": 3}, "must be a list, got a number"),
        ({}, {"items": None}, "must be a list, got null"),
    ],
)
def test_batch_items_fail_permanently_when_not_a_list(ctx_for, params, document, message):
    # given items that are missing or not a list / when resolved / then a permanent error says why
    with pytest.raises(PermanentNodeError, match=message):
        get_kind("parallel_batch").items(ctx_for("parallel_batch", params, document))


def test_batch_batches_cut_items_by_batch_size(ctx_for):
    # given ten items and batch_size 3 / when cut / then 4 consecutive batches, the last one short
    ctx = ctx_for("parallel_batch", {"batch_size": 3}, {"items": list(range(10))})
    assert get_kind("parallel_batch").batches(ctx) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_batch_batches_default_to_one_item_each_and_none_for_no_items(ctx_for):
    # given the default batch size / when cut / then one batch per item, and no batch for no items
    kind = get_kind("batch")
    assert kind.batches(ctx_for("batch", {}, {"items": ["a", "b"]})) == [["a"], ["b"]]
    assert kind.batches(ctx_for("batch", {}, {"items": []})) == []


def test_batch_batch_size_may_be_an_expression(ctx_for):
    # given batch_size from the document / when cut / then the rendered size is used
    ctx = ctx_for("parallel_batch", {"batch_size": "${input.size}"}, {"items": [1, 2, 3], "size": 2})
    assert get_kind("parallel_batch").batches(ctx) == [[1, 2], [3]]
    with pytest.raises(PermanentNodeError, match="batch_size"):
        get_kind("parallel_batch").batch_size(
            ctx_for("parallel_batch", {"batch_size": "${input.s}"}, {"s": 0})
        )


def test_batch_max_parallel_prefers_the_batch_block(ctx_for):
    # given params.max_parallel and a batch block / when asked / then the block wins, serial means one
    kind = get_kind("parallel_batch")
    assert kind.max_parallel(ctx_for("parallel_batch", {"max_parallel": 4})) == 4
    assert (
        kind.max_parallel(ctx_for("parallel_batch", {"max_parallel": 4}, batch=BatchPolicy("parallel", 2)))
        == 2
    )
    assert kind.max_parallel(ctx_for("parallel_batch", {"max_parallel": 4}, batch=BatchPolicy("serial"))) == 1
    assert kind.max_parallel(ctx_for("parallel_batch", {"max_parallel": "${input.n}"}, {"n": 3})) == 3
    assert kind.max_parallel(ctx_for("parallel_batch", {})) is None


def test_batch_process_runs_the_processor_script_on_one_batch(ctx_for):
    # given a processor that sees its batch, its index, the count and the document as `shared`
    script = (
        "return {sum: input.items.reduce((a, b) => a + b, 0), at: input.batch_index, of: input.batch_count, "
        "tag: shared.tag};"
    )
    ctx = ctx_for("parallel_batch", {"processor_script": script}, {"tag": "t", "items": [1, 2, 3, 4]})
    # when one batch is processed / then the script's value comes back
    assert get_kind("parallel_batch").process(ctx, [3, 4], 1, 2) == {"sum": 7, "at": 1, "of": 2, "tag": "t"}


def test_batch_process_without_script_returns_the_batch(ctx_for):
    # given no processor_script / when processed / then the batch's items are its output
    assert get_kind("worker_pool").process(ctx_for("worker_pool", {}), ["a", "b"], 0, 1) == ["a", "b"]


# Validation -------------------------------------------------------------------------------------------------


def test_batch_validate_accepts_the_go_params(param_problems):
    # given the Go complex flow's params / when validated / then no problem
    params = {"batch_size": 3, "max_parallel": 4, "timeout": "5s", "processor_script": "return 1;"}
    assert param_problems("parallel_batch", params) == []
    assert param_problems("worker_pool", {"items": "${input.rows}", "batch_size": "${input.n}"}) == []
    assert param_problems("batch", {"items": [1, 2]}) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"batch_size": 0}, [("batch_size", "'batch_size' must be at least 1, got 0")]),
        ({"batch_size": 1.5}, [("batch_size", "'batch_size' must be an integer, got a number")]),
        ({"max_parallel": True}, [("max_parallel", "'max_parallel' must be an integer, got a boolean")]),
        (
            {"processor_script": ["x"]},
            [("processor_script", "'processor_script' must be a string, got a list")],
        ),
        (
            {"items": 5},
            [
                (
                    "items",
                    "'items' must be an expression like '${input.items}', a document key or a list, "
                    "got a number",
                )
            ],
        ),
        (
            {"size": 2},
            [
                (
                    "size",
                    "unknown parameter 'size' (expected one of: batch_size, items, max_parallel, "
                    "processor_script)",
                )
            ],
        ),
    ],
)
def test_batch_validate_reports_precise_problems(param_problems, params, expected):
    # given bad params / when validated / then each is reported on its param
    assert param_problems("async_batch", params) == expected
