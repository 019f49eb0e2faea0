"""The API-format workflow model and the link rule."""

from __future__ import annotations

import pytest

from graphengine.errors import WorkflowInvalid
from graphengine.workflow import (
    MAX_LITERAL_DEPTH,
    InvalidValue,
    Link,
    load_prompt_text,
    parse_value,
    parse_workflow,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["4", 0], Link(("4", 0))),
        (("4", 2), Link(("4", 2))),
        ([4, 1], Link(("4", 1))),  # int ids are read as their decimal string
    ],
)
def test_two_element_lists_of_id_and_index_are_links(value, expected):
    assert parse_value(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        ["4", True],  # a bool is not an output index
        ["4", -1],
        ["4", 0.0],
        [True, 0],
        ["a", "b"],  # a list constant must be wrapped, never read as a literal
        [1, 2, 3],
        [],
    ],
)
def test_other_lists_are_bad_links_never_literals(value):
    parsed = parse_value(value)
    assert isinstance(parsed, InvalidValue)
    assert parsed.kind == "bad_linked_input"


def test_wrapped_lists_are_literals_even_when_they_look_like_links():
    assert parse_value({"__value__": ["4", 0]}) == ["4", 0]
    assert parse_value({"__value__": [1, 2, 3]}) == [1, 2, 3]


def test_scalars_and_objects_are_literals():
    for value in ("text", 3, 2.5, True, None):
        assert parse_value(value) == value
    assert parse_value({"a": [1, {"b": 2}]}) == {"a": [1, {"b": 2}]}


def test_deeply_nested_literals_are_rejected_without_recursion():
    deep: list = []
    for _ in range(200_000):
        deep = [deep]
    parsed = parse_value({"__value__": deep})
    assert isinstance(parsed, InvalidValue)
    assert parsed.kind == "invalid_input_type"
    assert f"{MAX_LITERAL_DEPTH} levels" in parsed.reason
    ok: list = []
    for _ in range(MAX_LITERAL_DEPTH - 1):
        ok = [ok]
    assert parse_value({"__value__": ok}) == ok


def test_parse_keeps_order_title_and_inputs():
    workflow = parse_workflow(
        {
            "9": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}, "_meta": {"title": "Show"}},
            "3": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
        }
    )
    assert list(workflow.nodes) == ["9", "3"]
    assert workflow.nodes["9"].title == "Show"
    assert workflow.nodes["9"].inputs == {"source": Link(("3", 0))}
    assert workflow.nodes["3"].title is None


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ([], "must be a JSON object"),
        ("text", "must be a JSON object"),
        (None, "must be a JSON object"),
        ({"1": 5}, "node #1 is not an object"),
        ({"1": {"inputs": {}}}, "missing the class_type property"),
        ({"1": {"class_type": "X", "inputs": [1]}}, "inputs of node #1 are not an object"),
    ],
)
def test_structural_problems_raise_invalid_prompt(prompt, message):
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(prompt)
    body = info.value.body
    assert body["error"]["type"] == "invalid_prompt"
    assert message in body["error"]["message"]
    assert body["node_errors"] == {}


def test_missing_class_type_has_comfyui_body():
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow({"7": {"inputs": {}}})
    assert info.value.body == {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because a node is missing the class_type property.",
            "details": "Node ID '#7'",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_malformed_json_is_a_clear_error():
    with pytest.raises(WorkflowInvalid) as info:
        load_prompt_text('{"1": {"class_type": ')
    assert info.value.body["error"]["message"] == "Invalid JSON"
    assert "line 1" in info.value.body["error"]["details"]


def test_absurdly_nested_json_is_a_clear_error():
    with pytest.raises(WorkflowInvalid) as info:
        load_prompt_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in info.value.body["error"]["details"]


def test_valid_json_text_loads():
    assert load_prompt_text(b'{"1": {"class_type": "A", "inputs": {}}}') == {"1": {"class_type": "A", "inputs": {}}}
