"""Flow YAML to JSON-safe values plus the line and column of every path; refuses what a flow never needs.

Policy on anchors and aliases: allowed (sharing a `retry:` block with `&retry`/`*retry` or `<<: *defaults`
is ordinary YAML, and the Go original accepts it), but every node reached through an alias counts against a
budget of MAX_ALIAS_EXPANSION nodes per document, and a recursive alias is refused. A "billion laughs"
document therefore costs a few thousand steps and answers with a problem instead of exhausting memory.
Paths reached through an alias carry the line and column of the anchored node.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from core.json import MAX_DEPTH
from flows.dsl.spec import Problem

MAX_TEXT_BYTES = 1024 * 1024
MAX_ALIAS_EXPANSION = 10_000

# libyaml is twice as fast and stops at 1000 nesting levels by itself; the pure-Python composer recurses.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
# PostgreSQL refuses NUL in text and jsonb, and an unpaired surrogate is not text: a `"\0"` escape must be a
# problem with a line, not a database error.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_PLAIN_SCALARS = {_TAG + name for name in ("int", "float", "bool", "null")}


@dataclass
class Tree:
    """Python values; `marks[path]`: a value's (line, column); `key_marks[path]`: its key's."""

    value: Any = None
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[str, tuple[int, int]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # how a number was written, for labels and ids
    problems: list[Problem] = field(default_factory=list)


def child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_error(exc: yaml.YAMLError, text: str) -> Problem:
    """A syntax error with the line and column YAML reports (1-based)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            # PyYAML's own reading order: "while scanning a block mapping, expected <block end>..."
            message = f"{exc.context}, {exc.problem}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return Problem("", line, column, f"invalid YAML: {message}")
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        before = text[:position]
        line, column = before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
        reason = getattr(exc, "reason", None) or str(exc)
        return Problem("", line, column, f"invalid YAML: {reason}")
    return Problem("", None, None, f"invalid YAML: {exc}")


def load(text: str | bytes) -> Tree:
    """Compose `text` and convert it; any problem that makes the document unusable leaves `value` None."""
    tree = Tree()
    if isinstance(text, bytes):
        size = len(text)
        if size <= MAX_TEXT_BYTES:
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                tree.problems.append(Problem("", None, None, f"the flow is not UTF-8 text: {exc.reason}"))
                return tree
    else:
        size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_TEXT_BYTES:
        tree.problems.append(
            Problem("", None, None, f"the flow is too large: {size} bytes (at most {MAX_TEXT_BYTES})")
        )
        return tree
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        tree.problems.append(_yaml_error(exc, text))
        return tree
    except RecursionError:
        tree.problems.append(Problem("", None, None, "invalid YAML: the document is nested too deeply"))
        return tree
    if root is None:
        tree.problems.append(
            Problem("", 1, 1, "the flow is empty: expected a mapping with 'metadata' and 'nodes'")
        )
        return tree
    converter = _Converter(tree)
    tree.value = converter.convert(root, "", 0)
    if converter.aborted:
        tree.value = None
    return tree


class _Converter:
    """Walks the composed node graph once, expanding aliases under a budget and recording positions."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.constructor = SafeConstructor()
        self.seen: set[int] = set()
        self.active: set[int] = set()
        self.visits = 0
        self.aborted = False

    def problem(self, path: str, position: tuple[int, int] | None, message: str) -> None:
        line, column = position if position else (None, None)
        self.tree.problems.append(Problem(path, line, column, message))

    def convert(self, node: Node, path: str, depth: int) -> Any:
        if self.aborted:
            return None
        position = _position(node)
        self.tree.marks.setdefault(path, position)
        if id(node) in self.active:
            self.problem(path, position, "recursive alias: an anchor may not contain an alias to itself")
            return None
        self.visits += 1
        self.seen.add(id(node))
        # A node visited again was reached through an alias; the difference is the alias expansion so far.
        if self.visits - len(self.seen) > MAX_ALIAS_EXPANSION:
            self.problem(
                path,
                position,
                f"aliases expand to more than {MAX_ALIAS_EXPANSION} nodes; refusing the document",
            )
            self.aborted = True
            return None
        if depth > MAX_DEPTH:
            self.problem(path, position, f"nested more than {MAX_DEPTH} levels deep")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, path, depth)
            return self.mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: str) -> Any:
        if node.tag == _TAG + "str":
            if _UNSTORABLE_TEXT.search(node.value):
                self.problem(
                    path, _position(node), "text may not contain NUL or unpaired surrogate characters"
                )
                return ""
            return node.value
        if node.tag == _TAG + "timestamp":
            # Keep dates as the text written: the spec is stored as JSON.
            return node.value
        if node.tag not in _PLAIN_SCALARS:
            # Reported here; the text as written stands in so later checks do not pile up on the same spot.
            self.problem(path, _position(node), f"unsupported YAML tag '{node.tag}'")
            return node.value
        try:
            value = self.constructor.construct_object(node)
        except ConstructorError as exc:
            self.problem(path, _position(node), f"invalid value: {exc.problem}")
            return None
        except ValueError:  # an integer past Python's 4300-digit conversion limit
            self.problem(path, _position(node), f"number too large ({len(node.value)} digits)")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(
                path, _position(node), f"'{node.value}' is not a finite number (JSON cannot hold it)"
            )
            return node.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.tree.texts.setdefault(path, node.value)
        return value

    def sequence(self, node: SequenceNode, path: str, depth: int) -> list[Any]:
        if node.tag != _TAG + "seq":
            self.problem(path, _position(node), f"unsupported YAML tag '{node.tag}'")
        return [self.convert(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(node.value)]

    def mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, Any]:
        if node.tag != _TAG + "map":
            self.problem(path, _position(node), f"unsupported YAML tag '{node.tag}'")
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self.problem(
                    path, _position(key_node), "mapping keys must be plain text, not a list or mapping"
                )
                continue
            # The key as written: `true:` in `next` is the action "true", `1:` the node id "1".
            key = key_node.value
            if _UNSTORABLE_TEXT.search(key):
                self.problem(
                    path, _position(key_node), "keys may not contain NUL or unpaired surrogate characters"
                )
                continue
            key_path = child_path(path, key)
            if key in first_line:
                self.problem(
                    key_path,
                    _position(key_node),
                    f"duplicate key '{key}' (first defined on line {first_line[key]})",
                )
                continue
            first_line[key] = _position(key_node)[0]
            self.tree.key_marks.setdefault(key_path, _position(key_node))
            result[key] = self.convert(value_node, key_path, depth + 1)
        for merge in merges:
            self.merge(result, merge, path, depth)
        return result

    def merge(self, result: dict[str, Any], merge: Node, path: str, depth: int) -> None:
        """`<<: *defaults` (or a list of them): keys written here win, then earlier sources over later."""
        sources = merge.value if isinstance(merge, SequenceNode) else [merge]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(path, _position(source), "'<<' merges only mappings")
                continue
            for key, value in self.convert(source, path, depth).items():
                result.setdefault(key, value)
