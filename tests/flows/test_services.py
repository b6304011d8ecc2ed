"""Flow services and selectors: ids, versions, soft delete, account scoping and the spec cache."""

from __future__ import annotations

import re

import pytest

from core.errors import NotFound
from flows import selectors
from flows.dsl.parser import parse_flow
from flows.dsl.spec import FlowSpec, FlowValidationError
from flows.models import Flow, FlowVersion
from flows.services import flow_create, flow_delete, flow_update

pytestmark = pytest.mark.django_db


def flow_text(name: str = "Order pipeline", version: str | None = "1.0.0", total: int = 1) -> str:
    version_line = f'  version: "{version}"\n' if version is not None else ""
    return (
        "metadata:\n"
        f"  name: {name}\n"
        "  description: Totals the orders\n"
        f"{version_line}"
        "nodes:\n"
        "  fetch:\n"
        "    type: transform\n"
        "    params:\n"
        f'      script: "return {{total: {total}}};"\n'
        "    next:\n"
        "      success: finish\n"
        "  finish:\n"
        "    type: transform\n"
        "    params:\n"
        '      script: "return {done: true};"\n'
    )


BROKEN_TEXT = (
    "metadata:\n  name: broken\nnodes:\n  a:\n    type: transform\n    next:\n      success: nowhere\n"
)


@pytest.fixture(autouse=True)
def _empty_spec_cache():
    # Version ids repeat across tests (rolled-back transactions), so a cached spec must not leak between them.
    selectors.flow_version_caches_clear()
    yield
    selectors.flow_version_caches_clear()


def test_flow_create_id_is_slug_plus_random_suffix(member):
    # given an account and a flow text named "Order pipeline"
    account, user = member
    # when the flow is created twice
    first = flow_create(account=account, user=user, content=flow_text())
    second = flow_create(account=account, user=user, content=flow_text())
    # then each id is the slug plus six lowercase letters or digits, and they differ
    assert re.fullmatch(r"order-pipeline-[a-z0-9]{6}", first.id)
    assert re.fullmatch(r"order-pipeline-[a-z0-9]{6}", second.id)
    assert first.id != second.id


def test_flow_create_id_of_a_long_or_unsluggable_name(member):
    # given names that are very long, or have no ASCII letters at all
    account, user = member
    # when flows are created with them
    long_flow = flow_create(account=account, user=user, content=flow_text(), name="x" * 150)
    odd_flow = flow_create(account=account, user=user, content=flow_text(), name="!!!")
    # then the slug part is cut at 60 characters, and an empty slug falls back to "flow"
    assert re.fullmatch(r"x{60}-[a-z0-9]{6}", long_flow.id)
    assert re.fullmatch(r"flow-[a-z0-9]{6}", odd_flow.id)
    assert odd_flow.name == "!!!"


def test_flow_create_takes_metadata_and_stores_version_one(member):
    # given a flow text with metadata name, description and version
    account, user = member
    content = flow_text()
    # when it is created without an explicit name
    flow = flow_create(account=account, user=user, content=content)
    # then the flow and its first version carry the metadata, the text as uploaded and the parsed spec
    flow.refresh_from_db()
    assert (flow.name, flow.description, flow.account) == ("Order pipeline", "Totals the orders", account)
    version = flow.current_version
    assert (version.number, version.version, version.content, version.created_by) == (
        1,
        "1.0.0",
        content,
        user,
    )
    assert version.spec == parse_flow(content).to_json()


def test_flow_create_name_argument_overrides_metadata(member):
    # given a flow text named "Order pipeline"
    account, user = member
    # when it is created with the name "Billing"
    flow = flow_create(account=account, user=user, content=flow_text(), name="Billing")
    # then the flow is called "Billing"
    assert flow.name == "Billing"
    assert flow.id.startswith("billing-")


def test_flow_create_invalid_text_raises_and_stores_nothing(member):
    # given a flow whose edge points at a node that does not exist
    account, user = member
    # when it is created
    with pytest.raises(FlowValidationError) as caught:
        flow_create(account=account, user=user, content=BROKEN_TEXT)
    # then the problem is reported and nothing was written
    assert caught.value.problems
    assert not Flow.objects.exists()
    assert not FlowVersion.objects.exists()


def test_flow_create_overlong_metadata_version_is_a_validation_problem(member):
    # given a metadata.version longer than the stored label may be
    account, user = member
    # when the flow is created
    with pytest.raises(FlowValidationError) as caught:
        flow_create(account=account, user=user, content=flow_text(version="9" * 65))
    # then it is a validation problem on metadata.version, not a database error
    assert [p.path for p in caught.value.problems] == ["metadata.version"]


def test_flow_update_adds_numbered_version_and_moves_current(member):
    # given a flow without metadata.version
    account, user = member
    flow = flow_create(account=account, user=user, content=flow_text(version=None))
    # when two changed texts are uploaded
    flow_update(flow=flow, user=user, content=flow_text(version=None, total=2))
    flow = flow_update(flow=flow, user=user, content=flow_text(version="3.1", total=3))
    # then versions 1..3 exist, labelled automatically unless metadata.version says otherwise
    labels = list(FlowVersion.objects.filter(flow=flow).order_by("number").values_list("number", "version"))
    assert labels == [(1, "1"), (2, "2"), (3, "3.1")]
    flow.refresh_from_db()
    assert flow.current_version.number == 3
    assert "total: 3" in flow.current_version.content


def test_flow_update_identical_content_creates_no_version(member):
    # given a flow
    account, user = member
    flow = flow_create(account=account, user=user, content=flow_text())
    # when the same text is uploaded again
    same = flow_update(flow=flow, user=user, content=flow_text())
    # then no version is added and the current version is unchanged
    assert FlowVersion.objects.filter(flow=flow).count() == 1
    assert same.current_version_id == flow.current_version_id


def test_flow_update_name_follows_metadata_unless_chosen(member):
    # given one flow named by its metadata and one named explicitly
    account, user = member
    by_metadata = flow_create(account=account, user=user, content=flow_text())
    chosen = flow_create(account=account, user=user, content=flow_text(), name="Chosen")
    # when both get a text with a new metadata.name
    by_metadata = flow_update(flow=by_metadata, user=user, content=flow_text(name="Renamed"))
    chosen = flow_update(flow=chosen, user=user, content=flow_text(name="Renamed"))
    # then the first follows the metadata and the second keeps its chosen name
    assert by_metadata.name == "Renamed"
    assert chosen.name == "Chosen"


def test_flow_update_invalid_text_keeps_current_version(member):
    # given a flow
    account, user = member
    flow = flow_create(account=account, user=user, content=flow_text())
    # when a broken text is uploaded
    with pytest.raises(FlowValidationError):
        flow_update(flow=flow, user=user, content=BROKEN_TEXT)
    # then the flow still has its one version
    flow.refresh_from_db()
    assert flow.current_version.number == 1
    assert FlowVersion.objects.filter(flow=flow).count() == 1


def test_flow_update_deleted_flow_is_not_found(member):
    # given a deleted flow
    account, user = member
    flow = flow_create(account=account, user=user, content=flow_text())
    flow_delete(flow=flow)
    # when a new text is uploaded, then it is refused as not found
    with pytest.raises(NotFound):
        flow_update(flow=flow, user=user, content=flow_text(total=2))


def test_flow_delete_is_soft_and_keeps_history(member):
    # given a flow with two versions
    account, user = member
    flow = flow_create(account=account, user=user, content=flow_text())
    flow_update(flow=flow, user=user, content=flow_text(total=2))
    # when it is deleted
    flow_delete(flow=flow)
    # then the row and its versions remain, marked deleted, and the selectors no longer see it
    flow.refresh_from_db()
    assert flow.deleted_at is not None
    assert FlowVersion.objects.filter(flow=flow).count() == 2
    assert not selectors.flow_list(account=account).exists()
    with pytest.raises(NotFound):
        selectors.flow_get(account=account, flow_id=flow.id)


def test_flow_get_hides_other_accounts_and_missing_alike(member, other_member):
    # given a flow of another account
    other_account, other_user = other_member
    theirs = flow_create(account=other_account, user=other_user, content=flow_text())
    # when the caller's account asks for it, or for an id that does not exist
    with pytest.raises(NotFound) as foreign:
        selectors.flow_get(account=member[0], flow_id=theirs.id)
    with pytest.raises(NotFound) as missing:
        selectors.flow_get(account=member[0], flow_id="no-such-flow")
    # then both answers are the same
    assert foreign.value.message == missing.value.message


def test_flow_list_is_scoped_newest_first(member, other_member):
    # given two flows of the caller and one of another account
    account, user = member
    older = flow_create(account=account, user=user, content=flow_text(), name="Older")
    newer = flow_create(account=account, user=user, content=flow_text(), name="Newer")
    flow_create(account=other_member[0], user=other_member[1], content=flow_text())
    # when the caller's flows are listed
    listed = list(selectors.flow_list(account=account))
    # then only theirs appear, newest first
    assert listed == [newer, older]


def test_flow_versions_lists_highest_number_first(member):
    # given a flow with two versions
    account, user = member
    flow = flow_create(account=account, user=user, content=flow_text())
    flow_update(flow=flow, user=user, content=flow_text(total=2))
    # when its versions are listed, then the newest comes first
    assert [v.number for v in selectors.flow_versions(flow=flow)] == [2, 1]


def test_flow_version_spec_is_cached_by_version_id(member, django_assert_num_queries):
    # given a stored version
    account, user = member
    version_id = flow_create(account=account, user=user, content=flow_text()).current_version_id
    # when its spec is asked for by id twice
    with django_assert_num_queries(1):
        first = selectors.flow_version_spec(version_id)
    with django_assert_num_queries(0):
        second = selectors.flow_version_spec(version_id)
    # then the second answer comes from the cache and equals the parsed text
    assert isinstance(first, FlowSpec)
    assert second is first
    assert first == parse_flow(flow_text())


def test_flow_version_spec_cache_evicts_least_recently_used(member, monkeypatch):
    # given a cache that holds two specs
    monkeypatch.setattr(selectors._specs, "size", 2)
    account, user = member
    flow = flow_create(account=account, user=user, content=flow_text())
    versions = [flow.current_version]
    for total in (2, 3):
        versions.append(flow_update(flow=flow, user=user, content=flow_text(total=total)).current_version)
    # when three versions are read, the first one touched again before the third
    first = selectors.flow_version_spec(versions[0])
    second = selectors.flow_version_spec(versions[1])
    selectors.flow_version_spec(versions[0])
    third = selectors.flow_version_spec(versions[2])
    # then the least recently used (the second) was evicted and parses anew; the first and third survived
    assert selectors.flow_version_spec(versions[0]) is first
    assert selectors.flow_version_spec(versions[2]) is third
    assert selectors.flow_version_spec(versions[1]) is not second


def test_flow_version_label_is_read_once_per_version(member, django_assert_num_queries):
    # given a flow version known only by its id
    account, user = member
    version = flow_create(account=account, user=user, content=flow_text()).current_version
    # when its label is read twice by id, then once more from the instance
    with django_assert_num_queries(1):
        first = selectors.flow_version_label(version.pk)
        second = selectors.flow_version_label(version.pk)
    # then one query answered all of them
    with django_assert_num_queries(0):
        assert selectors.flow_version_label(version) == first == second == version.version
