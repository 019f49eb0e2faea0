"""Validation: every ComfyUI error kind with its exact body, reported all at once."""

from __future__ import annotations

import time

import pytest

from graphengine.errors import WorkflowInvalid
from graphengine.coercion import coerce_bool, coerce_float, coerce_int, coerce_string

CHECKED_CONFIG = {
    "choice": [["alpha", "beta", "gamma"]],
    "count": ["INT", {"default": 1, "min": 1, "max": 10}],
    "ratio": ["FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0}],
    "word": ["STRING", {"default": "ok"}],
    "flag": ["BOOLEAN", {"default": False}],
}


def checked(**inputs):
    base = {"choice": "alpha", "count": 1, "ratio": 0.5, "word": "ok", "flag": False}
    base.update(inputs)
    return {
        "1": {"class_type": "FakeChecked", "inputs": base},
        "2": {"class_type": "FakeOutput", "inputs": {"value": ["1", 0]}},
    }


def body_of(engine, prompt, **kwargs):
    with pytest.raises(WorkflowInvalid) as info:
        engine.validate(prompt, **kwargs)
    return info.value.body


def only_error(body):
    (entry,) = body["node_errors"].values()
    (error,) = entry["errors"]
    return error


def test_valid_prompt_is_coerced(engine):
    validated = engine.validate(checked(count="7", ratio=1, word=5, flag="true"))
    assert validated.outputs == ("2",)
    assert validated.node_errors == {}
    assert validated.prompt["1"]["inputs"] == {"choice": "alpha", "count": 7, "ratio": 1.0, "word": "5", "flag": True}
    assert validated.prompt["2"]["inputs"] == {"value": ["1", 0]}


def test_unknown_class(engine):
    body = body_of(engine, {"5": {"class_type": "Nope", "inputs": {}}})
    assert body == {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node Nope does not exist.",
            "details": "Node ID '#5'",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_unknown_class_fails_even_in_an_orphan(engine):
    prompt = checked()
    prompt["9"] = {"class_type": "Missing", "inputs": {}}
    assert body_of(engine, prompt)["error"]["message"] == "Cannot execute because node Missing does not exist."


def test_no_outputs(engine):
    body = body_of(engine, {"1": {"class_type": "FakeInt", "inputs": {"value": 1}}})
    assert body == {
        "error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}},
        "node_errors": {},
    }


def test_required_input_missing(engine):
    prompt = checked()
    del prompt["1"]["inputs"]["count"]
    body = body_of(engine, prompt)
    assert body == {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "Required input is missing: count",
            "extra_info": {},
        },
        "node_errors": {
            "1": {
                "errors": [
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": "count",
                        "extra_info": {"input_name": "count"},
                    }
                ],
                "dependent_outputs": ["2"],
                "class_type": "FakeChecked",
            }
        },
    }


def test_value_smaller_than_min(engine):
    assert only_error(body_of(engine, checked(count=0))) == {
        "type": "value_smaller_than_min",
        "message": "Value 0 smaller than min of 1",
        "details": "count",
        "extra_info": {"input_name": "count", "input_config": CHECKED_CONFIG["count"], "received_value": 0},
    }


def test_value_bigger_than_max(engine):
    assert only_error(body_of(engine, checked(ratio="1.5"))) == {
        "type": "value_bigger_than_max",
        "message": "Value 1.5 bigger than max of 1.0",
        "details": "ratio",
        "extra_info": {"input_name": "ratio", "input_config": CHECKED_CONFIG["ratio"], "received_value": 1.5},
    }


def test_value_not_in_list(engine):
    assert only_error(body_of(engine, checked(choice="delta"))) == {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": "choice: 'delta' not in ['alpha', 'beta', 'gamma']",
        "extra_info": {"input_name": "choice", "input_config": CHECKED_CONFIG["choice"], "received_value": "delta"},
    }


def test_long_combo_lists_are_summarised(engine):
    prompt = {
        "1": {"class_type": "RegexExtract", "inputs": {
            "string": "x", "regex_pattern": "x", "mode": "Nope", "case_insensitive": True,
            "multiline": False, "dotall": False, "group_index": 1}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    error = only_error(body_of(engine, prompt))
    assert error["details"] == "mode: 'Nope' not in ['First Match', 'All Matches', 'First Group', 'All Groups']"


def test_invalid_input_type(engine):
    assert only_error(body_of(engine, checked(count="many"))) == {
        "type": "invalid_input_type",
        "message": "Failed to convert an input value to a INT value",
        "details": "count, many, could not convert string to float: 'many'",
        "extra_info": {
            "input_name": "count",
            "input_config": CHECKED_CONFIG["count"],
            "received_value": "many",
            "exception_message": "could not convert string to float: 'many'",
        },
    }


def test_custom_validation_failed(engine):
    assert only_error(body_of(engine, checked(word="bad"))) == {
        "type": "custom_validation_failed",
        "message": "Custom validation failed for node",
        "details": "word - the word must not be 'bad'",
        "extra_info": {"input_name": "word"},
    }


def test_return_type_mismatch(engine):
    prompt = {
        "1": {"class_type": "FakeLatentSource", "inputs": {}},
        "2": {"class_type": "FakeImageSink", "inputs": {"image": ["1", 0]}},
    }
    assert only_error(body_of(engine, prompt)) == {
        "type": "return_type_mismatch",
        "message": "Return type mismatch between linked nodes",
        "details": "image, received_type(FAKE_LATENT) mismatch input_type(FAKE_IMAGE)",
        "extra_info": {
            "input_name": "image",
            "input_config": ["FAKE_IMAGE"],
            "received_type": "FAKE_LATENT",
            "linked_node": ["1", 0],
        },
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["99", 0], "value: node '99' does not exist"),
        (["1", 3], "value: node '1' (FakeInt) has 1 output(s); output 3 does not exist"),
        ([1, 2, 3], "value: a list of 3 elements is not a link"),
        (["1", "0"], "value: the output index '0' is not a non-negative integer"),
    ],
)
def test_bad_linked_input(engine, value, reason):
    prompt = {
        "1": {"class_type": "FakeInt", "inputs": {"value": 1}},
        "2": {"class_type": "FakeOutput", "inputs": {"value": value}},
    }
    error = only_error(body_of(engine, prompt))
    assert error["type"] == "bad_linked_input"
    assert error["message"] == "Bad linked input, must be a length-2 list of [string, int]"
    assert error["details"].startswith(reason)
    assert error["extra_info"]["input_name"] == "value"
    assert error["extra_info"]["input_config"] == ["*"]


def test_exception_during_validation(engine):
    error = only_error(body_of(engine, checked(word="raise")))
    assert error["type"] == "exception_during_validation"
    assert error["message"] == "Exception when validating node"
    assert error["details"] == "checker crashed"
    assert error["extra_info"]["exception_type"] == "RuntimeError"
    assert isinstance(error["extra_info"]["traceback"], list) and error["extra_info"]["traceback"]


def test_invalid_regex_is_caught_at_validation(engine):
    prompt = {
        "1": {"class_type": "RegexMatch", "inputs": {"string": "x", "regex_pattern": "(", "case_insensitive": True,
                                                      "multiline": False, "dotall": False}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    error = only_error(body_of(engine, prompt))
    assert error["type"] == "custom_validation_failed"
    assert error["details"].startswith("regex_pattern - invalid regular expression '('")


def test_dependency_cycle_is_named(engine):
    prompt = {
        "a": {"class_type": "FakeAdd", "inputs": {"a": ["c", 0], "b": 1}},
        "b": {"class_type": "FakeAdd", "inputs": {"a": ["a", 0], "b": 1}},
        "c": {"class_type": "FakeAdd", "inputs": {"a": ["b", 0], "b": 1}},
        "out": {"class_type": "FakeOutput", "inputs": {"value": ["c", 0]}},
    }
    body = body_of(engine, prompt)
    assert body["node_errors"] == {
        "a": {
            "errors": [
                {
                    "type": "dependency_cycle",
                    "message": "Dependency cycle detected",
                    "details": "a (FakeAdd) -> b (FakeAdd) -> c (FakeAdd) -> a",
                    "extra_info": {},
                }
            ],
            "dependent_outputs": ["out"],
            "class_type": "FakeAdd",
        }
    }
    assert body["error"]["details"] == "Dependency cycle detected: a (FakeAdd) -> b (FakeAdd) -> c (FakeAdd) -> a"


def test_self_loop_is_a_cycle(engine):
    prompt = {
        "a": {"class_type": "FakeAdd", "inputs": {"a": ["a", 0]}},
        "out": {"class_type": "FakeOutput", "inputs": {"value": ["a", 0]}},
    }
    assert only_error(body_of(engine, prompt))["details"] == "a (FakeAdd) -> a"


def test_all_errors_are_reported_at_once_and_transitive_failures_have_no_entry(engine):
    prompt = checked(count=0, choice="nope")
    prompt["3"] = {"class_type": "FakeAdd", "inputs": {"b": 2}}  # "a" missing
    prompt["4"] = {"class_type": "FakeOutput", "inputs": {"value": ["3", 0]}}
    prompt["5"] = {"class_type": "FakeOutput", "inputs": {"value": ["4x", 0]}}
    body = body_of(engine, prompt)
    assert set(body["node_errors"]) == {"1", "3", "5"}
    assert [e["type"] for e in body["node_errors"]["1"]["errors"]] == ["value_not_in_list", "value_smaller_than_min"]
    assert body["node_errors"]["3"]["dependent_outputs"] == ["4"]
    assert body["error"]["details"].count("\n") == 3


def test_orphans_with_bad_values_are_ignored(engine):
    prompt = checked()
    prompt["9"] = {"class_type": "FakeChecked", "inputs": {"choice": "zzz", "count": -5}}
    validated = engine.validate(prompt)
    assert "9" not in validated.nodes


def test_partially_failing_outputs_still_run_the_good_ones(engine):
    prompt = checked()
    prompt["3"] = {"class_type": "FakeOutput", "inputs": {"value": ["4", 0]}}
    prompt["4"] = {"class_type": "FakeInt", "inputs": {"value": 5000}}
    validated = engine.validate(prompt)
    assert validated.outputs == ("2",)
    assert validated.node_errors["4"]["dependent_outputs"] == ["3"]
    run = engine.execute(validated, prompt_id="p")
    assert set(run.outputs) == {"2"}


def test_partial_execution_targets(engine):
    prompt = checked()
    prompt["3"] = {"class_type": "FakeOutput", "inputs": {"value": 1}}
    assert engine.validate(prompt, partial_execution_targets=["3"]).outputs == ("3",)
    assert set(engine.validate(prompt, partial_execution_targets=["3"]).nodes) == {"3"}
    # non-output ids in the list are ignored; no listed output → no outputs
    assert body_of(engine, prompt, partial_execution_targets=["1"])["error"]["type"] == "prompt_no_outputs"


def test_literal_for_a_socket_input_is_rejected(engine):
    prompt = {"2": {"class_type": "FakeImageSink", "inputs": {"image": "a picture"}}}
    error = only_error(body_of(engine, prompt))
    assert error["type"] == "invalid_input_type"
    assert "take a link" in error["details"]


def test_null_for_a_required_input_is_missing(engine):
    assert only_error(body_of(engine, checked(count=None)))["type"] == "required_input_missing"


def test_deeply_nested_literal_is_a_clear_error(engine):
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    prompt = {"2": {"class_type": "FakeOutput", "inputs": {"value": {"__value__": deep}}}}
    error = only_error(body_of(engine, prompt))
    assert error["type"] == "invalid_input_type"
    assert "nested more than" in error["details"]


def test_huge_graph_validates_iteratively_in_bounded_time(engine):
    n = 100_000
    prompt = {"0": {"class_type": "FakeInt", "inputs": {"value": 1}}}
    for i in range(1, n):
        prompt[str(i)] = {"class_type": "FakeAdd", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    prompt["out"] = {"class_type": "FakeOutput", "inputs": {"value": [str(n - 1), 0]}}
    started = time.perf_counter()
    validated = engine.validate(prompt)
    assert len(validated.nodes) == n + 1
    prompt[str(n // 2)]["inputs"]["a"] = [str(n - 1), 0]  # a cycle through half the chain
    body = body_of(engine, prompt)
    assert body["node_errors"][str(n // 2)]["errors"][0]["type"] == "dependency_cycle"
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5), ("20", 20), ("20.0", 20), (3.0, 3), (True, 1), (2**64 - 1, 2**64 - 1), ("18446744073709551615", 2**64 - 1)],
)
def test_coerce_int(value, expected):
    assert coerce_int(value) == expected


@pytest.mark.parametrize("value", [2.5, "2.5", "x", None, [1], {"a": 1}, "nan"])
def test_coerce_int_rejects(value):
    with pytest.raises((TypeError, ValueError)):
        coerce_int(value)


def test_coerce_float_string_bool():
    assert coerce_float("0.8") == 0.8 and coerce_float(2) == 2.0 and isinstance(coerce_float(2), float)
    with pytest.raises(ValueError):
        coerce_float("nan")
    with pytest.raises(ValueError):
        coerce_float(float("inf"))
    assert coerce_string(5) == "5" and coerce_string(1.5) == "1.5"
    with pytest.raises(TypeError):
        coerce_string(["a"])
    assert coerce_bool("false") is False and coerce_bool("TRUE") is True and coerce_bool(0) is False
    for bad in ("maybe", 2, 1.0, None):
        with pytest.raises((TypeError, ValueError)):
            coerce_bool(bad)


def test_unchanged_resubmission_reuses_the_validation(engine):
    from tests.fakes import chain

    prompt = chain(5)
    first = engine.validate(prompt)
    assert engine.validate(prompt) is first
    prompt["n2"]["inputs"]["b"] = 9  # changed in place: recognised
    second = engine.validate(prompt)
    assert second is not first and second.prompt["n2"]["inputs"]["b"] == 9
    assert engine.validate(prompt, partial_execution_targets=["out"]) is not second


def test_classes_whose_checks_read_the_environment_are_always_revalidated(engine):
    prompt = checked()
    first = engine.validate(prompt)
    assert engine.validate(prompt) is not first  # FakeChecked has validate_inputs


def test_incremental_validation_rechecks_what_changed_and_what_it_links_to(engine):
    prompt = {
        "1": {"class_type": "FakeInt", "inputs": {"value": 1}},
        "2": {"class_type": "FakeAdd", "inputs": {"a": ["1", 0], "b": 2}},
        "3": {"class_type": "FakeOutput", "inputs": {"value": ["2", 0]}},
    }
    first = engine.validate(prompt)
    prompt["2"]["inputs"]["b"] = 5
    second = engine.validate(prompt)
    assert second.nodes["1"] is first.nodes["1"]  # unchanged: reused
    assert second.nodes["2"].literals == {"b": 5}
    # the consumer's own inputs are unchanged, but what it links to changed class: checked again
    prompt["1"] = {"class_type": "FakeLatentSource", "inputs": {}}
    error = only_error(body_of(engine, prompt))
    assert error["type"] == "return_type_mismatch" and error["details"].startswith("a, received_type(FAKE_LATENT)")
    # and a link to a node that appears later is re-resolved
    prompt = {"3": {"class_type": "FakeOutput", "inputs": {"value": ["9", 0]}}}
    assert only_error(body_of(engine, prompt))["type"] == "bad_linked_input"
    prompt["9"] = {"class_type": "FakeInt", "inputs": {"value": 4}}
    assert engine.validate(prompt).outputs == ("3",)


@pytest.mark.parametrize(
    ("inputs", "literals"),
    [
        ({"count": 1, "ratio": 0.0}, {"count": 1, "ratio": 0.0}),  # the bounds themselves pass
        ({"count": 10, "ratio": 1.0}, {"count": 10, "ratio": 1.0}),
        ({"count": True, "ratio": 1, "flag": 1}, {"count": 1, "ratio": 1.0, "flag": True}),  # coerced
        ({"count": 3.0, "ratio": "0.25", "word": 7}, {"count": 3, "ratio": 0.25, "word": "7"}),
        ({"choice": "gamma", "flag": True}, {"choice": "gamma", "flag": True}),
    ],
)
def test_accepted_literals_keep_or_get_their_declared_type(engine, inputs, literals):
    node = engine.validate(checked(**inputs)).nodes["1"]
    for name, value in literals.items():
        assert node.literals[name] == value and type(node.literals[name]) is type(value), name


@pytest.mark.parametrize(
    ("inputs", "kind"),
    [
        ({"count": 11}, "value_bigger_than_max"),
        ({"count": 0}, "value_smaller_than_min"),
        ({"ratio": -0.5}, "value_smaller_than_min"),
        ({"ratio": float("inf")}, "invalid_input_type"),
        ({"ratio": float("nan")}, "invalid_input_type"),
        ({"count": 2.5}, "invalid_input_type"),
        ({"flag": "maybe"}, "invalid_input_type"),
        ({"choice": 1}, "value_not_in_list"),
        ({"choice": ["alpha"]}, "bad_linked_input"),
    ],
)
def test_rejected_literals(engine, inputs, kind):
    assert only_error(body_of(engine, checked(**inputs)))["type"] == kind


def test_any_typed_inputs_keep_the_literal_as_sent(engine):
    for value in ("text", 3, 2.5, True, {"__value__": [1, 2]}):
        prompt = {"o": {"class_type": "FakeOutput", "inputs": {"value": value}}}
        literal = engine.validate(prompt).nodes["o"].literals["value"]
        expected = [1, 2] if isinstance(value, dict) else value
        assert literal == expected and type(literal) is type(expected)


def test_validated_nodes_are_in_depth_first_post_order_sources_first(engine):
    prompt = {
        "out": {"class_type": "FakeOutput", "inputs": {"value": ["sum", 0]}},
        "sum": {"class_type": "FakeAdd", "inputs": {"a": ["left", 0], "b": ["right", 0]}},
        "right": {"class_type": "FakeAdd", "inputs": {"a": ["base", 0], "b": ["base", 0]}},  # the same source twice
        "left": {"class_type": "FakeAdd", "inputs": {"a": ["base", 0]}},
        "base": {"class_type": "FakeInt", "inputs": {"value": 2}},
        "orphan": {"class_type": "FakeInt", "inputs": {"value": 1}},
    }
    validated = engine.validate(prompt)
    assert list(validated.nodes) == ["base", "left", "right", "sum", "out"]
    assert dict(validated.nodes["right"].links) == {"a": ("base", 0), "b": ("base", 0)}
    assert engine.run(prompt).outputs == {"out": {"values": [6]}}


def test_a_cycle_through_two_links_to_the_same_node_is_reported_once(engine):
    prompt = {
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["x", 0]}},
        "x": {"class_type": "FakeAdd", "inputs": {"a": ["y", 0], "b": ["y", 0]}},
        "y": {"class_type": "FakeAdd", "inputs": {"a": ["x", 0]}},
    }
    body = body_of(engine, prompt)
    assert list(body["node_errors"]) == ["x"]
    assert [e["type"] for e in body["node_errors"]["x"]["errors"]] == ["dependency_cycle"]
    assert body["error"]["details"] == "Dependency cycle detected: x (FakeAdd) -> y (FakeAdd) -> x"


def test_a_prompt_whose_failing_part_reads_the_environment_is_validated_again(engine):
    prompt = checked(word="bad")  # FakeChecked has validate_inputs: its verdict may change
    prompt["3"] = {"class_type": "FakeOutput", "inputs": {"value": 1}}
    first = engine.validate(prompt)
    assert first.outputs == ("3",) and set(first.node_errors) == {"1"}
    assert engine.validate(prompt) is not first


def test_memo_reuse_survives_in_place_edits_of_links_and_titles(engine):
    prompt = {
        "a": {"class_type": "FakeInt", "inputs": {"value": 1}},
        "b": {"class_type": "FakeInt", "inputs": {"value": 10}},
        "s": {"class_type": "FakeAdd", "inputs": {"a": ["a", 0], "b": ["b", 0]}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["s", 0]}},
    }
    first = engine.validate(prompt)
    prompt["s"]["inputs"]["a"][0] = "b"  # the link lists themselves edited in place
    prompt["s"]["inputs"]["b"][0] = "a"
    second = engine.validate(prompt)
    assert second.nodes["s"] is not first.nodes["s"]
    assert dict(second.nodes["s"].links) == {"a": ("b", 0), "b": ("a", 0)}
    assert second.nodes["a"] is first.nodes["a"] and second.nodes["b"] is first.nodes["b"]
    assert list(second.nodes) == ["b", "a", "s", "o"]
    prompt["a"]["_meta"] = {"title": "renamed"}
    assert engine.validate(prompt).nodes["a"].title == "renamed"
