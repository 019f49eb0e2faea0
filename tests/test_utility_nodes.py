"""The utility node pack: ComfyUI's names, schemas and behaviour, run through the engine."""

from __future__ import annotations

import pytest

from nodes.utility import NODES, preview_text

COMFY_NAMES = {
    "PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean",
    "StringConcatenate", "StringSubstring", "StringLength", "StringReplace", "StringTrim", "CaseConverter",
    "StringContains", "StringCompare", "RegexMatch", "RegexExtract", "RegexReplace", "PreviewAny",
}


def show(engine, class_type, **inputs):
    run = engine.run({"1": {"class_type": class_type, "inputs": inputs},
                      "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
    assert run.ok, run.error and run.error.data()
    return run.outputs["2"]["text"][0]


def test_pack_has_comfyui_class_names():
    assert {n.class_type for n in NODES} == COMFY_NAMES


def test_object_info_entries(engine):
    info = engine.object_info()
    assert info["PrimitiveInt"]["input"]["required"]["value"] == [
        "INT", {"min": -(2**63 - 1), "max": 2**63 - 1, "control_after_generate": True}
    ]
    assert info["PrimitiveInt"]["output"] == ["INT"] and info["PrimitiveInt"]["category"] == "utils/primitive"
    assert info["CaseConverter"]["input"]["required"]["mode"] == [["UPPERCASE", "lowercase", "Capitalize", "Title Case"]]
    assert info["StringLength"]["output_name"] == ["length"]
    assert info["PreviewAny"]["input"]["required"]["source"] == ["*"]
    assert info["PreviewAny"]["output"] == [] and info["PreviewAny"]["output_node"] is True
    assert info["RegexReplace"]["input_order"] == {
        "required": ["string", "regex_pattern", "replace"],
        "optional": ["case_insensitive", "multiline", "dotall", "count"],
    }


def test_primitives(engine):
    assert show(engine, "PrimitiveInt", value="42") == "42"
    assert show(engine, "PrimitiveFloat", value=1) == "1.0"
    assert show(engine, "PrimitiveString", value="x") == "x"
    assert show(engine, "PrimitiveStringMultiline", value="a\nb") == "a\nb"
    assert show(engine, "PrimitiveBoolean", value="false") == "False"


def test_strings(engine):
    assert show(engine, "StringConcatenate", string_a="a", string_b="b", delimiter=", ") == "a, b"
    assert show(engine, "StringSubstring", string="abcdef", start=1, end=-1) == "bcde"
    assert show(engine, "StringLength", string="héllo") == "5"
    assert show(engine, "StringReplace", string="a-b-c", find="-", replace="+") == "a+b+c"
    assert show(engine, "StringTrim", string="  x  ", mode="Left") == "x  "
    assert show(engine, "StringTrim", string="  x  ", mode="Both") == "x"
    assert show(engine, "CaseConverter", string="hello world", mode="Title Case") == "Hello World"
    assert show(engine, "CaseConverter", string="Hello", mode="lowercase") == "hello"
    assert show(engine, "StringContains", string="Hello", substring="ELL", case_sensitive=False) == "True"
    assert show(engine, "StringContains", string="Hello", substring="ELL", case_sensitive=True) == "False"
    assert show(engine, "StringCompare", string_a="Hello", string_b="he", mode="Starts With", case_sensitive=False) == "True"
    assert show(engine, "StringCompare", string_a="Hello", string_b="lo", mode="Ends With", case_sensitive=True) == "True"
    assert show(engine, "StringCompare", string_a="a", string_b="A", mode="Equal", case_sensitive=True) == "False"


REGEX_FLAGS = {"case_insensitive": True, "multiline": False, "dotall": False}


def test_regex_nodes(engine):
    assert show(engine, "RegexMatch", string="Cat", regex_pattern="^c", **REGEX_FLAGS) == "True"
    text = "a1 b22 c333"
    assert show(engine, "RegexExtract", string=text, regex_pattern=r"(\w)(\d+)", mode="First Match", group_index=1, **REGEX_FLAGS) == "a1"
    assert show(engine, "RegexExtract", string=text, regex_pattern=r"(\w)(\d+)", mode="All Matches", group_index=1, **REGEX_FLAGS) == "a1\nb22\nc333"
    assert show(engine, "RegexExtract", string=text, regex_pattern=r"(\w)(\d+)", mode="First Group", group_index=2, **REGEX_FLAGS) == "1"
    assert show(engine, "RegexExtract", string=text, regex_pattern=r"(\w)(\d+)", mode="All Groups", group_index=2, **REGEX_FLAGS) == "1\n22\n333"
    assert show(engine, "RegexExtract", string=text, regex_pattern=r"(\w)", mode="First Group", group_index=5, **REGEX_FLAGS) == ""
    assert show(engine, "RegexReplace", string="a1 b2", regex_pattern=r"(\w)(\d)", replace=r"\2\1") == "1a 2b"
    assert show(engine, "RegexReplace", string="aaa", regex_pattern="A", replace="b", count=2) == "bba"


def test_bad_replacement_fails_the_node_clearly(engine):
    run = engine.run({"1": {"class_type": "RegexReplace", "inputs": {"string": "a", "regex_pattern": "(a)", "replace": r"\3"}},
                      "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
    assert run.status == "error"
    assert run.error.data()["exception_type"] == "graphengine.errors.NodeInputError"
    assert "invalid replacement" in run.error.data()["exception_message"]


@pytest.mark.parametrize(
    ("value", "text"),
    [("s", "s"), (3, "3"), (2.5, "2.5"), (True, "True"), (None, "None"), ([1, {"a": 2}], '[\n    1,\n    {\n        "a": 2\n    }\n]')],
)
def test_preview_text(value, text):
    assert preview_text(value) == text


def test_preview_any_literal_list(engine):
    run = engine.run({"1": {"class_type": "PreviewAny", "inputs": {"source": {"__value__": [1, 2]}}}})
    assert run.outputs == {"1": {"text": ["[\n    1,\n    2\n]"]}}
