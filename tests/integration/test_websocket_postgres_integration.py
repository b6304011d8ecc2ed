"""The seed's WebSocket + PostgreSQL integration scenarios, proven for real: daphne, Celery workers, Redis,
PostgreSQL, and clients that only speak HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import yaml

from tests.integration.api_steps import create_flow, node_runs, set_secret, start_run
from tests.integration.ws_watch import Watch, describe, describe_update, watch_until_complete

FIXTURES = Path(__file__).resolve().parents[1] / "flows" / "fixtures"
COMPLEX = (FIXTURES / "go_complex_flow.yaml").read_text()
SIMPLE = (FIXTURES / "go_simple_branching.yaml").read_text()
API_KEY = "test-api-key-for-postgres-integration"
DB_PASSWORD = "super-secret-db-password"


def _edges(content: str) -> dict[str, set[str]]:
    nodes = yaml.safe_load(content)["nodes"]
    return {node_id: set((node.get("next") or {}).values()) for node_id, node in nodes.items()}


def _assert_follows_graph(watch: Watch, edges: dict[str, set[str]]) -> list[str]:
    route: list[str] = []
    for status in watch.statuses:
        node = status["current_node"]
        if node and (not route or route[-1] != node):
            route.append(node)
    for here, there in zip(route, route[1:], strict=False):
        assert there in edges[here], f"{here} → {there} is not an edge of the flow (route {route})"
    return route


def _assert_progress(watch: Watch) -> None:
    progress = [float(s["progress"]) for s in watch.statuses]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    assert progress[-1] == 100.0
    assert all(p < 100 for p, s in zip(progress, watch.statuses, strict=True) if s["status"] == "running")


def test_complex_flow_three_concurrent_executions_complete_with_live_updates(live_stack, live_api, live_user):
    # Given the Go original's complex flow and the two secrets its scripts read
    set_secret(live_api, "API_KEY", API_KEY)
    set_secret(live_api, "DB_PASSWORD", DB_PASSWORD)
    flow_id = create_flow(live_api, COMPLEX)
    edges = _edges(COMPLEX)

    # When three executions run at once, each watched by its own WebSocket
    async def scenario() -> list[Watch]:
        watches = []
        for number in (1, 2, 3):
            execution_id = start_run(
                live_api,
                flow_id,
                {
                    "execution_number": number,
                    "test_metadata": {
                        "test_type": "complex_parallel_batch",
                        "backend": "postgresql",
                        "concurrency": True,
                    },
                },
            )
            watches.append(Watch(execution_id))
        await asyncio.gather(
            *(watch_until_complete(live_stack.ws_url, live_user.headers, w) for w in watches)
        )
        return watches

    watches = asyncio.run(scenario())

    # Then every one completes, its progress only rises to 100, and its current_node follows the graph
    for number, watch in enumerate(watches, start=1):
        for status in watch.statuses:
            print(describe_update(status))
        print(describe(watch, number))
        final = live_api.get(f"/executions/{watch.execution_id}").json()
        assert final["status"] == "completed", final
        assert watch.statuses[-1]["status"] == "completed"
        assert watch.completed["message"] == "Execution completed with status: completed"
        _assert_progress(watch)
        route = _assert_follows_graph(watch, edges)
        assert route[0] == "prepare_data" and route[-1] == "final_summary"
        # And the branch taken is the one the data calls for
        results = final["results"]
        expected = {
            "success": "high_success_handler",
            "partial": "partial_success_handler",
            "failure": "low_success_handler",
        }[results["analysis_result"]]
        assert expected in route
        assert results["success_rate"] == results["processed_items"] / results["total_items"]
        # And the secrets were used (masked by the flow itself) but never shown in clear
        summary = results["execution_summary"]
        assert summary["api_key_used"] == API_KEY[:4] + "..." + API_KEY[-4:]
        assert summary["db_password_used"] == "***" + DB_PASSWORD[-4:]
        assert API_KEY not in repr(watch.frames) and DB_PASSWORD not in repr(watch.frames)
        # And the seqs never went backwards (the snapshot repeats the last replayed seq, by design)
        seqs = watch.seqs()
        assert seqs == sorted(seqs) and len(seqs) - len(set(seqs)) <= 1
        # And the batch node really ran as batches on workers
        parts = [r for r in node_runs(live_api, watch.execution_id) if r["batch_index"] is not None]
        assert {p["batch_index"] for p in parts} == {0, 1, 2, 3}


def test_simple_branching_takes_the_branch_its_data_calls_for(live_stack, live_api, live_user):
    flow_id = create_flow(live_api, SIMPLE)
    edges = _edges(SIMPLE)
    for _ in range(3):
        execution_id = start_run(live_api, flow_id, {"test_run": True, "backend": "postgresql"})
        watch = asyncio.run(watch_until_complete(live_stack.ws_url, live_user.headers, Watch(execution_id)))
        for status in watch.statuses:
            print(describe_update(status))
        final = live_api.get(f"/executions/{execution_id}").json()
        assert final["status"] == "completed", final
        results = final["results"]
        value = results["test_value"]
        category = "high" if value > 70 else ("medium" if value > 30 else "low")
        assert results["category"] == category
        assert results["processing_result"] == f"{category.upper()}_VALUE_PROCESSED"
        route = _assert_follows_graph(watch, edges)
        assert route == ["start", "evaluate_category", f"{category}_value_processor", "finalize"]
        _assert_progress(watch)


LOAD_FLOW = """
metadata: {name: load}
nodes:
  a: {type: transform, params: {script: "return {a: input.n * 2}"}, next: {success: b}}
  b: {type: condition, params: {script: "return input.a % 4 === 0 ? 'even' : 'odd'"}, next: {even: c, odd: c}}
  c: {type: transform, params: {script: "return {c: input.a + 1}"}}
"""


def test_load_many_concurrent_executions_each_with_a_subscriber(live_stack, live_api, live_user):
    # Given N executions started at once (FLOWRUNNER_LOAD_EXECUTIONS, modest by default)
    size = int(os.environ.get("FLOWRUNNER_LOAD_EXECUTIONS", "25"))
    flow_id = create_flow(live_api, LOAD_FLOW)

    async def scenario() -> list[Watch]:
        watches = [Watch(start_run(live_api, flow_id, {"n": n})) for n in range(size)]
        await asyncio.gather(
            *(watch_until_complete(live_stack.ws_url, live_user.headers, w, timeout=180) for w in watches)
        )
        return watches

    watches = asyncio.run(scenario())
    # Then every subscriber got `complete`, nothing was lost, each final document is right
    assert all(w.completed for w in watches)
    for n, watch in enumerate(watches):
        final = watch.statuses[-1]
        assert final["status"] == "completed"
        assert final["results"]["c"] == n * 2 + 1
        seqs = watch.seqs()
        assert seqs == sorted(seqs), "frames must arrive in seq order"
        assert sorted(set(seqs)) == list(range(1, seqs[-1] + 1)), (
            "a subscriber from seq 0 must see every event"
        )
    print(f"load: {size} executions, slowest {max(w.duration for w in watches):.1f}s")
