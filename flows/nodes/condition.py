"""The `condition` kind: a script (or a list of conditions) chooses which `next` edge to follow."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from flows.nodes.base import NodeContext, NodeKind, NodeResult, PermanentNodeError, Report
from flows.nodes.params import Checker, is_number, type_name
from flows.nodes.registry import register

# `condition_script` is the Go original's name; `script` is accepted as the house-wide spelling.
SCRIPT_PARAMS = ("condition_script", "script")
_RETURN = re.compile(r"\breturn\b")
_WHOLE_EXPRESSION = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


def choose_action(value: Any, edges: Mapping[str, Any]) -> str:
    """The action a condition's return value selects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or "success"
    if isinstance(value, dict):
        for field in ("action", "branch"):
            chosen = value.get(field)
            if isinstance(chosen, str) and chosen:
                return chosen
        # e.g. `{...input, branch_decision: "high"}` with a `high` edge: the one value naming an edge wins.
        named = {v for v in value.values() if isinstance(v, str) and v in edges}
        if len(named) == 1:
            return named.pop()
    return "success"


def condition_body(condition: str) -> str:
    """A function body for one `conditions[].condition`: an expression, `${expr}`, or a body with `return`."""
    text = condition.strip()
    whole = _WHOLE_EXPRESSION.match(text)
    if whole and "${" not in whole.group(1):
        text = whole.group(1).strip()
    if _RETURN.search(text):
        return text
    return f"return (\n{text}\n);"


def conditions_script(conditions: list[dict[str, Any]]) -> str:
    """One sandbox call for the whole list: the index of the first truthy condition, else -1."""
    functions = []
    for entry in conditions:
        condition = entry.get("condition")
        if isinstance(condition, bool):
            functions.append(f"() => {json.dumps(condition)}")
        else:
            functions.append("() => {\n" + condition_body(str(condition)) + "\n}")
    return (
        "const __conditions = [\n" + ",\n".join(functions) + "\n];\n"
        "for (let i = 0; i < __conditions.length; i++) { if (__conditions[i]()) return i; }\n"
        "return -1;"
    )


class ConditionKind(NodeKind):
    name = "condition"
    pure = True

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow(*SCRIPT_PARAMS, "conditions", "default_action")
        scripts = [name for name in SCRIPT_PARAMS if name in params]
        for name in scripts:
            check.string(name, required=True)
        if len(scripts) > 1:
            report(scripts[1], "give either 'condition_script' or 'script', not both")
        if "conditions" in params:
            if scripts:
                report("conditions", f"give either '{scripts[0]}' or 'conditions', not both")
            self._validate_conditions(params["conditions"], report)
        elif not scripts:
            report("", "a condition needs 'condition_script' (or 'script') or 'conditions'")
        if "default_action" in params:
            if "conditions" not in params:
                report("default_action", "'default_action' applies only with 'conditions'")
            check.string("default_action", required=True)

    @staticmethod
    def _validate_conditions(conditions: Any, report: Report) -> None:
        if not isinstance(conditions, list) or not conditions:
            report("conditions", f"'conditions' must be a non-empty list, got {type_name(conditions)}")
            return
        for index, entry in enumerate(conditions):
            where = f"conditions[{index}]"
            if not isinstance(entry, dict):
                report(
                    where,
                    f"each condition must be a mapping with 'condition' and 'action', got {type_name(entry)}",
                )
                continue
            for key in entry:
                if key not in ("condition", "action"):
                    report(f"{where}.{key}", f"unknown key '{key}' (expected condition, action)")
            condition = entry.get("condition")
            if condition is None:
                report(where, "missing 'condition'")
            elif not isinstance(condition, str | bool) or (
                isinstance(condition, str) and not condition.strip()
            ):
                report(
                    f"{where}.condition", "'condition' must be a JavaScript expression (a non-empty string)"
                )
            action = entry.get("action")
            if action is None:
                report(where, "missing 'action'")
            elif not isinstance(action, str) or not action:
                report(f"{where}.action", f"'action' must be a non-empty string, got {type_name(action)}")

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.node.params
        conditions = params.get("conditions")
        if conditions is not None:
            if not isinstance(conditions, list):
                raise PermanentNodeError("condition: params.conditions must be a list")
            index = ctx.run_script(conditions_script(conditions))
            # The sandbox may hand JS numbers back as floats.
            if is_number(index) and 0 <= int(index) < len(conditions):
                return NodeResult(output=None, action=str(conditions[int(index)]["action"]))
            return NodeResult(output=None, action=params.get("default_action") or "success")
        script = next((params[name] for name in SCRIPT_PARAMS if isinstance(params.get(name), str)), None)
        if script is None:
            raise PermanentNodeError("condition: params.condition_script must be a string")
        value = ctx.run_script(script)
        return NodeResult(output=value, action=choose_action(value, ctx.node.next))


register(ConditionKind())
