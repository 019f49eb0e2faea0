"""Placeholder substitution on the JSON tree: table-driven cases a template user would notice."""

from __future__ import annotations

import base64
import io
import json
from typing import ClassVar

import pytest
from PIL import Image

from graphengine.node import Input, Node, NodeOutputs, Output
from graphengine.registry import NodePack, NodeRegistry
from graphengine.templates import Template, TemplateError, check, render, render_template
from graphengine.templates.values import RANDOM_SEED_LIMIT


def _png(width: int = 2, height: int = 2) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def wf(**inputs: object) -> dict:
    return {"1": {"class_type": "Probe", "inputs": inputs}}


TRICKY_TEXTS = [
    "plain",
    'with "quotes" and \\backslashes\\',
    "line one\nline two\ttab",
    "dollar $' splice $& match $` prefix $$ double $1",
    "unicode: café ☕ 日本語 🐱 \u2028 sep",
    '"}, "9": {"class_type": "Evil", "inputs": {}}, "x": {"a": "',
    "%prompt%",
    "",
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_any_text_value_lands_verbatim(text: str) -> None:
    prompt = render(wf(text="%prompt%", other="keep"), {"prompt": text})
    assert prompt["1"]["inputs"]["text"] == text
    assert prompt["1"]["inputs"]["other"] == "keep"
    assert set(prompt) == {"1"}  # nothing spliced into the structure
    assert json.loads(json.dumps(prompt)) == prompt


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("steps", 20, 20),
        ("steps", "20", 20),
        ("steps", "20.0", 20),
        ("steps", 20.0, 20),
        ("width", " 512 ", 512),
        ("scale", 7, 7.0),
        ("scale", "7.5", 7.5),
        ("denoise", "0.7", 0.7),
        ("denoise", 1, 1.0),
        ("seed", 5, 5),
        ("seed", "9007199254740991", 9007199254740991),
        ("seed", 2**64 - 1, 2**64 - 1),
        ("clip_skip", 2, -2),
        ("clip_skip", "1", -1),
        ("clip_skip", -3, -3),
        ("model", "my model.safetensors", "my model.safetensors"),
        ("sampler", "euler", "euler"),
        ("negative_prompt", 12, "12"),
    ],
)
def test_predefined_values_are_converted_to_their_kind(name: str, given: object, expected: object) -> None:
    prompt = render(wf(value=f"%{name}%"), {name: given})
    value = prompt["1"]["inputs"]["value"]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "given", "fragment"),
    [
        ("steps", "twenty", "expected an integer"),
        ("steps", "2.5", "expected an integer"),
        ("steps", True, "expected an integer"),
        ("scale", "7,5", "expected a number"),
        ("scale", "nan", "expected a number"),
        ("seed", -2, "seed must be"),
        ("seed", 2**64, "seed must be"),
        ("clip_skip", 0, "clip skip"),
        ("prompt", ["a"], "expected text"),
        ("char_avatar", "not base64 !!", "not valid base64"),
        ("char_avatar", base64.b64encode(b"plain text, no image").decode(), "does not decode as an image"),
        ("user_avatar", 5, "base64 image"),
    ],
)
def test_bad_predefined_values_name_placeholder_node_and_input(name: str, given: object, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(wf(value=f"%{name}%"), {name: given})
    (problem,) = info.value.problems
    assert problem.type == "invalid_placeholder_value"
    assert problem.placeholder == name and problem.node_id == "1" and problem.input_name == "value"
    assert fragment in problem.message
    body = info.value.to_body({"1": {"class_type": "Probe"}})
    assert body["node_errors"]["1"]["class_type"] == "Probe"
    assert body["node_errors"]["1"]["errors"][0]["extra_info"]["input_name"] == "value"


def test_seed_minus_one_draws_a_fresh_safe_integer_each_render() -> None:
    template = wf(seed="%seed%", again="%seed%")
    seeds = set()
    for _ in range(20):
        prompt = render(template, {"seed": -1})
        seed = prompt["1"]["inputs"]["seed"]
        assert isinstance(seed, int) and 0 <= seed < RANDOM_SEED_LIMIT
        assert prompt["1"]["inputs"]["again"] == seed  # one seed per render, like SillyTavern's replaceAll
        seeds.add(seed)
    assert len(seeds) > 15
    # absent seed falls back to −1 → random; the resolved value is reported
    rendered = render_template(template, {}, seed_source=lambda: 42)
    assert rendered.prompt["1"]["inputs"]["seed"] == 42 and rendered.values["seed"] == 42


def test_avatar_accepts_raw_base64_and_data_url_and_inserts_raw() -> None:
    raw = _png()
    assert render(wf(image="%char_avatar%"), {"char_avatar": raw})["1"]["inputs"]["image"] == raw
    data_url = "data:image/png;base64," + raw
    assert render(wf(image="%user_avatar%"), {"user_avatar": data_url})["1"]["inputs"]["image"] == raw


def test_only_exact_quoted_placeholders_are_replaced() -> None:
    template = wf(
        exact="%prompt%",
        embedded="photo of %prompt%",
        case="%Prompt%",
        spaced=" %prompt%",
        number=5,
        link=["2", 0],
    )
    template["2"] = {"class_type": "Other", "inputs": {}}
    rendered = render_template(template, {"prompt": "cat", "Prompt": "Cat"})
    inputs = rendered.prompt["1"]["inputs"]
    assert inputs["exact"] == "cat"
    assert inputs["embedded"] == "photo of %prompt%"  # left as text, as SillyTavern does
    assert inputs["spaced"] == " %prompt%"
    assert inputs["case"] == "Cat"  # case-sensitive: a different (custom) placeholder
    assert inputs["number"] == 5 and inputs["link"] == ["2", 0]
    assert any("embedded" in w and "photo of %prompt%" in w for w in rendered.warnings)


def test_unfilled_and_unknown_placeholders_are_all_reported_with_their_place() -> None:
    template = {
        "3": {"class_type": "KSampler", "inputs": {"steps": "%steps%", "cfg": "%mystery%"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "%prompt%"}},
    }
    with pytest.raises(TemplateError) as info:
        render(template, {})
    found = {(p.type, p.placeholder, p.node_id, p.input_name) for p in info.value.problems}
    assert found == {
        ("unfilled_placeholder", "steps", "3", "steps"),
        ("unknown_placeholder", "mystery", "3", "cfg"),
        ("unfilled_placeholder", "prompt", "6", "text"),
    }
    body = info.value.to_body(template)
    assert set(body["node_errors"]) == {"3", "6"}
    assert body["node_errors"]["6"]["errors"][0]["message"] == "Placeholder %prompt% has no value"
    assert "node 3 input 'cfg'" in body["error"]["details"] or "node 3" in json.dumps(body)


def test_template_defaults_fill_missing_values_and_request_values_win() -> None:
    template = Template(name="t", workflow=wf(text="%prompt%", strength="%strength%"), defaults={"prompt": "dog", "strength": "0.5"})
    assert render(template, {})["1"]["inputs"] == {"text": "dog", "strength": "0.5"}
    assert render(template, {"prompt": "cat"})["1"]["inputs"]["text"] == "cat"
    # a template document dict works the same way
    assert render(template.to_json(), {"strength": 1})["1"]["inputs"]["strength"] == 1


def test_render_does_not_modify_the_template() -> None:
    template = wf(text="%prompt%", nested=["%prompt%", 1])
    before = json.dumps(template)
    render(template, {"prompt": "x"})
    assert json.dumps(template) == before


# --- typed mode: conversions driven by the node declarations in a registry ---


class Probe(Node):
    """A node with one input of each widget type."""

    category: ClassVar[str] = "test"
    count: int = Input(0)
    strength: float = Input(1.0)
    enabled: bool = Input(False)
    text: str = Input("")

    class Outputs(NodeOutputs):
        out: int = Output()


REGISTRY = NodeRegistry([NodePack("probe", (Probe,))])


@pytest.mark.parametrize(
    ("input_name", "given", "expected"),
    [
        ("count", "5", 5),
        ("count", "5.0", 5),
        ("strength", "0.8", 0.8),
        ("strength", 1, 1.0),
        ("enabled", "false", False),  # not Python's bool("false") == True
        ("enabled", "true", True),
        ("text", 12, "12"),
        ("text", "12", "12"),
    ],
)
def test_typed_mode_converts_custom_values_to_the_declared_type(input_name: str, given: object, expected: object) -> None:
    prompt = render(wf(**{input_name: "%custom%"}), {"custom": given}, REGISTRY)
    value = prompt["1"]["inputs"][input_name]
    assert value == expected and type(value) is type(expected)


def test_without_registry_custom_strings_stay_strings_like_sillytavern() -> None:
    assert render(wf(strength="%custom%"), {"custom": "0.8"})["1"]["inputs"]["strength"] == "0.8"
    assert render(wf(strength="%custom%"), {"custom": "0.8"}, REGISTRY, typed=False)["1"]["inputs"]["strength"] == "0.8"


@pytest.mark.parametrize(("input_name", "given"), [("count", "many"), ("strength", "strong"), ("enabled", "maybe"), ("count", "1.5")])
def test_typed_mode_rejects_impossible_conversions_clearly(input_name: str, given: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(wf(**{input_name: "%custom%"}), {"custom": given}, REGISTRY)
    (problem,) = info.value.problems
    assert problem.placeholder == "custom" and problem.node_id == "1" and problem.input_name == input_name
    assert "Probe" in problem.message and input_name in problem.message


def test_typed_mode_leaves_unknown_node_types_to_validation() -> None:
    template = {"1": {"class_type": "NotInRegistry", "inputs": {"x": "%custom%"}}}
    assert render(template, {"custom": "3"}, REGISTRY)["1"]["inputs"]["x"] == "3"


def test_invalid_template_shapes_are_template_errors() -> None:
    for bad in ({"1": "node"}, {"1": {"inputs": {}}}, {"nodes": [], "links": []}, {}):
        with pytest.raises(TemplateError) as info:
            render(bad, {})
        assert info.value.problems[0].type == "invalid_template"


def test_check_reports_predefined_custom_and_flags() -> None:
    template = {
        "1": {"class_type": "Probe", "inputs": {"text": "%prompt%", "count": "%custom%", "strength": "x %seed% y"}},
        "2": {"class_type": "Probe", "_meta": {"title": "%width%"}, "inputs": {"text": "%Prompt%", "link": ["%height%", 0], "nosuch": "%custom%"}},
    }
    report = check(template, REGISTRY)
    present = {p["name"]: p["present"] for p in report["predefined"]}
    assert present["prompt"] is True and present["seed"] is False and present["model"] is False
    assert present["width"] is True and present["height"] is True
    assert [c["name"] for c in report["custom"]] == ["custom", "Prompt"]
    placements = {(f["name"], f["placement"]) for f in report["flagged"]}
    assert ("seed", "embedded") in placements
    assert ("width", "metadata") in placements
    assert ("height", "nested") in placements
    assert ("Prompt", "input") in placements  # case variant of a predefined name
    assert [f["input"] for f in report["flagged"] if "has no input" in f["message"]] == ["nosuch"]
    assert report["ok"] is False
    assert set(report["missing_values"]) == {"prompt", "custom", "Prompt", "width", "height"}
