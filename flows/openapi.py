"""JSON Schema of a flow document (the YAML of README's flow language) for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from core.api.openapi import ref
from flows.dsl.spec import BACKOFFS, BATCH_STRATEGIES
from flows.dsl.validate import QUEUE_NAME
from flows.nodes.registry import known_kinds

# The string format of a flow's YAML text (the JSON form's `content`). JSON Schema cannot say what makes a
# flow valid beyond its shape (every `next` target names a node, one start node, each kind's params), so
# the format names those rules; tests/security/schemathesis_hooks.py teaches the fuzzer to write such texts.
FLOW_YAML_FORMAT = "flow-yaml"
FLOW_DOCUMENT = ref("FlowDocument")
FLOW_TEXT = {
    "type": "string",
    "format": FLOW_YAML_FORMAT,
    "minLength": 1,
    "description": "The flow's YAML text: a mapping that is a FlowDocument, with the rules the FlowDocument "
    "schema describes.",
}

FLOW_RULES = (
    "Beyond this shape a flow must satisfy what JSON Schema cannot state: every `next` target names a node, "
    "the start node is `metadata.start` or else the single node no edge points to, and each node's "
    "`params` are those of its kind (README, flow language). A flow breaking a rule is answered with 400 "
    "listing every problem with its line and column."
)

_NOT_EMPTY = {"type": "string", "minLength": 1}
_DURATION_TEXT = r"^\s*(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)\s*$"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """YAML's empty value (`retry:`) is null and means "not given"."""
    return {"anyOf": [schema, {"type": "null"}]}


def _duration(description: str) -> dict[str, Any]:
    return _nullable(
        {
            "description": description,
            "anyOf": [
                {"type": "string", "pattern": _DURATION_TEXT},
                {"type": "number", "minimum": 0},
            ],
        }
    )


def _edge_target() -> dict[str, Any]:
    # A node id written as a number (`next: {success: 2}`) is read as its text.
    return {"anyOf": [_NOT_EMPTY, {"type": "number"}], "description": "The id of the next node."}


def flow_node_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "One node: its kind, the kind's params, and the edges to follow after it.",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "enum": known_kinds(), "description": "The node kind."},
            "description": _nullable({"type": "string"}),
            "params": _nullable({"type": "object", "description": "The kind's parameters (README)."}),
            "next": _nullable(
                {
                    "type": "object",
                    "description": "Action → the id of the node to run next (`default`: any other action).",
                    "propertyNames": {"minLength": 1},
                    "additionalProperties": _edge_target(),
                }
            ),
            "retry": _nullable(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "max_retries": {"type": "integer", "minimum": 0},
                        "wait": _duration("Delay before the first retry (default 1s)."),
                        "max_wait": _duration("Cap of the delay (default 5m)."),
                        "backoff": {"type": "string", "enum": list(BACKOFFS)},
                        "jitter": {"type": "boolean"},
                    },
                }
            ),
            "batch": _nullable(
                {
                    "type": "object",
                    "description": "Batch kinds only.",
                    "additionalProperties": False,
                    "properties": {
                        "strategy": {"type": "string", "enum": list(BATCH_STRATEGIES)},
                        "max_parallel": {"type": "integer", "minimum": 1},
                    },
                }
            ),
            "timeout": _duration("The node's time limit, greater than 0."),
            "queue": _nullable({"type": "string", "pattern": f"^{QUEUE_NAME.pattern}$"}),
        },
    }


def flow_document_schema(node_ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"A flow: `metadata` and `nodes`. {FLOW_RULES}",
        "required": ["metadata", "nodes"],
        "additionalProperties": False,
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name"],
                "description": "Keys other than these are kept as description only.",
                "properties": {
                    "name": {"type": "string", "pattern": r"\S"},
                    "description": _nullable({"type": "string"}),
                    "version": _nullable(
                        {"anyOf": [_NOT_EMPTY, {"type": "number"}], "description": "The version's label."}
                    ),
                    "start": _nullable(
                        {"anyOf": [_NOT_EMPTY, {"type": "integer"}], "description": "The start node's id."}
                    ),
                },
            },
            "nodes": {
                "type": "object",
                "description": "Node id → node.",
                "minProperties": 1,
                "propertyNames": {"minLength": 1},
                "additionalProperties": node_ref,
            },
        },
    }
