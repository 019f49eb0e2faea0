"""ComfyUI API-format workflows parsed into typed values at the boundary.

An API-format workflow is a JSON object ``{node_id: {"class_type": str, "inputs": {name: value},
"_meta": {"title": str}?}}``. Node ids are strings (JSON object keys always are).

The link rule (decided here, tested in ``tests/test_workflow.py``):

* A **link** is a list (or tuple) of exactly two elements ``[source_node_id, output_index]`` where
  ``source_node_id`` is a string (an int is accepted and read as its decimal string, since hand-written
  workflows sometimes use ``[4, 0]``) and ``output_index`` is an ``int`` that is not a ``bool`` and is
  ``>= 0``.
* **Any other list is an error** (``bad_linked_input``), never a literal: ComfyUI reads every
  two-element list as a link, so a list-valued constant would be ambiguous. List-valued constants
  must be wrapped as ``{"__value__": [...]}``, which is always a literal, whatever it contains.
* Every other value (string, number, bool, null, object) is a literal. Literals may nest lists and
  objects at most ``MAX_LITERAL_DEPTH`` levels deep; deeper values are rejected with a clear error
  (checked without recursion, so a hostile value cannot exhaust the stack).

Parsing never raises for a single bad input value: the value becomes an ``InvalidValue`` marker and
validation reports it, but only if the node feeds an output (orphan nodes are ignored, as in ComfyUI).
Structural problems that make the prompt unusable (not an object, a node that is not an object, a
missing ``class_type``) raise ``WorkflowInvalid`` with ComfyUI's ``invalid_prompt`` body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphengine.errors import WorkflowInvalid

MAX_LITERAL_DEPTH = 64
"""Deepest nesting of lists/objects accepted inside one literal input value."""

MAX_PROMPT_BYTES = 64 * 1024 * 1024
"""Largest workflow JSON text ``load_prompt_text`` accepts."""


class Link(tuple):
    """An edge: the input takes output ``output`` of node ``node_id``. Built as ``Link((id, index))``
    (a plain tuple underneath, so building one costs what building a tuple costs)."""

    __slots__ = ()

    @property
    def node_id(self) -> str:
        return self[0]

    @property
    def output(self) -> int:
        return self[1]

    def to_json(self) -> list[Any]:
        return [self[0], self[1]]

    def __repr__(self) -> str:
        return f"Link({self[0]!r}, {self[1]!r})"


@dataclass(frozen=True, slots=True)
class InvalidValue:
    """An input value that can be neither a link nor a literal; validation reports ``kind``."""

    raw: Any
    kind: str  # "bad_linked_input" | "invalid_input_type"
    reason: str


@dataclass(slots=True, eq=False)
class WorkflowNode:
    """One node: its class and its raw input values as submitted.

    ``inputs`` gives the parsed view (per input a ``Link``, an ``InvalidValue`` or the literal);
    validation classifies the values it needs itself with the same rule (``parse_value``).
    """

    id: str
    class_type: str
    raw_inputs: Mapping[str, Any]
    title: str | None
    raw: Mapping[str, Any]  # the node's JSON object as submitted (for the history prompt copy)

    @property
    def inputs(self) -> dict[str, Any]:
        return {name: parse_value(value) for name, value in self.raw_inputs.items()}


@dataclass(slots=True, eq=False)
class Workflow:
    """A parsed API-format workflow; ``nodes`` keeps the submitted order."""

    nodes: dict[str, WorkflowNode]


def invalid_prompt(message: str, details: str = "", **extra_info: Any) -> WorkflowInvalid:
    """ComfyUI's top-level ``invalid_prompt`` 400 body, as an exception."""
    return WorkflowInvalid(
        {
            "error": {"type": "invalid_prompt", "message": message, "details": details, "extra_info": extra_info},
            "node_errors": {},
        }
    )


def load_prompt_text(text: str | bytes) -> Any:
    """Decode workflow JSON text; malformed, oversized or absurdly nested JSON raises ``WorkflowInvalid``."""
    if len(text) > MAX_PROMPT_BYTES:
        raise invalid_prompt("Workflow too large", f"{len(text)} bytes; the limit is {MAX_PROMPT_BYTES}")
    try:
        return json.loads(text)
    except RecursionError:
        raise invalid_prompt("Invalid JSON", "the document is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_prompt("Invalid JSON", str(exc)) from None


def parse_workflow(data: Any) -> Workflow:
    """Parse an API-format prompt (already decoded from JSON) into a ``Workflow``."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise invalid_prompt(
            "The prompt must be a JSON object mapping node ids to nodes",
            f"got {_json_type(data)}",
        )
    nodes: dict[str, WorkflowNode] = {}
    for raw_id, raw_node in data.items():
        node_id = raw_id if type(raw_id) is str else _node_id(raw_id)
        if node_id is None:
            raise invalid_prompt("Node ids must be strings", f"Node ID {raw_id!r}")
        if type(raw_node) is not dict and not isinstance(raw_node, Mapping):
            raise invalid_prompt(
                f"Cannot execute because node #{node_id} is not an object", f"Node ID '#{node_id}'"
            )
        class_type = raw_node.get("class_type")
        if type(class_type) is not str:
            if class_type is None:
                raise invalid_prompt(
                    "Cannot execute because a node is missing the class_type property.", f"Node ID '#{node_id}'"
                )
            raise invalid_prompt(
                f"Cannot execute because node {class_type!r} does not exist.", f"Node ID '#{node_id}'"
            )
        raw_inputs = raw_node.get("inputs")
        if type(raw_inputs) is not dict:
            if raw_inputs is None:
                raw_inputs = {}
            elif not isinstance(raw_inputs, Mapping):
                raise invalid_prompt(
                    f"Cannot execute because the inputs of node #{node_id} are not an object",
                    f"Node ID '#{node_id}'",
                )
        meta = raw_node.get("_meta")
        title = _title(meta) if meta is not None else None
        nodes[node_id] = WorkflowNode(node_id, class_type, raw_inputs, title, raw_node)
    return Workflow(nodes)


def parse_value(value: Any) -> Any:
    """Classify one input value: a ``Link``, an ``InvalidValue`` or the (unwrapped) literal."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is list or kind is tuple:
        return _parse_link(value)
    if kind is dict or isinstance(value, Mapping):
        if len(value) == 1 and "__value__" in value:
            value = value["__value__"]
        problem = literal_problem(value)
        if problem:
            return InvalidValue(value, "invalid_input_type", problem)
        return value
    return value


def _parse_link(value: list[Any] | tuple[Any, ...]) -> Link | InvalidValue:
    if len(value) != 2:
        return InvalidValue(
            value, "bad_linked_input", f"a list of {len(value)} elements is not a link; wrap list constants as {{\"__value__\": [...]}}"
        )
    source, output = value
    source_id = source if type(source) is str else _node_id(source)
    if source_id is None:
        return InvalidValue(value, "bad_linked_input", f"the source node id {source!r} is not a string")
    if type(output) is not int or output < 0:
        return InvalidValue(value, "bad_linked_input", f"the output index {output!r} is not a non-negative integer")
    return Link((source_id, output))


def _node_id(value: Any) -> str | None:
    if type(value) is int:  # bool is excluded: type(True) is bool
        return str(value)
    return None


def literal_problem(value: Any) -> str | None:
    """Why a literal cannot be accepted (too deeply nested, non-JSON keys), or None. No recursion."""
    if not isinstance(value, (list, tuple, dict, Mapping)):
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        if depth > MAX_LITERAL_DEPTH:
            return f"the value is nested more than {MAX_LITERAL_DEPTH} levels deep"
        seen += 1
        if isinstance(item, Mapping):
            children = item.values()
            for key in item:
                if type(key) is not str:
                    return f"object key {key!r} is not a string"
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        for child in children:
            if isinstance(child, (list, tuple, Mapping)):
                stack.append((child, depth + 1))
    return None


def _title(meta: Any) -> str | None:
    if isinstance(meta, Mapping):
        title = meta.get("title")
        if isinstance(title, str):
            return title
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__
