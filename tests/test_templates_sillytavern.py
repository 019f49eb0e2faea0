"""SillyTavern's two shipped ComfyUI workflows: rendered exactly as SillyTavern renders them, then
with graphengine's safety guarantees where SillyTavern's string replacement breaks."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from graphengine.templates import SillyTavernSettings, TemplateError, check, render, render_sillytavern
from graphengine.templates.sillytavern import PNG_PIXEL, js_replace_all, sillytavern_prompt_body

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sillytavern"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/sillytavern is absent")


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def st_settings(**overrides: object) -> SillyTavernSettings:
    base: dict = dict(
        prompt="a cat",
        negative_prompt="blurry",
        seed=1234,
        denoising_strength=0.7,
        clip_skip=1,
        model="model.safetensors",
        vae="vae.safetensors",
        sampler="euler",
        scheduler="normal",
        steps=20,
        scale=7,
        width=512,
        height=512,
    )
    base.update(overrides)
    return SillyTavernSettings(**base)


def our_values(settings: SillyTavernSettings) -> dict:
    return {
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": settings.seed,
        "denoise": settings.denoising_strength,
        "clip_skip": settings.clip_skip,
        "model": settings.model,
        "vae": settings.vae,
        "sampler": settings.sampler,
        "scheduler": settings.scheduler,
        "steps": settings.steps,
        "scale": settings.scale,
        "width": settings.width,
        "height": settings.height,
        "char_avatar": settings.char_avatar,
        "user_avatar": settings.user_avatar,
    }


def png_with_big_text_chunk() -> str:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps({"name": "Seraphina", "bio": "x" * 20000}).encode()).decode())
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(buffer, "PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_default_workflow_renders_exactly_as_sillytavern_does() -> None:
    text = fixture_text("Default_Comfy_Workflow.json")
    settings = st_settings()
    st_graph = json.loads(render_sillytavern(text, settings))
    ours = render(json.loads(text), our_values(settings))
    assert ours == st_graph
    # the documented shape: numbers stay numbers, literal denoise 1 untouched
    ks = ours["3"]["inputs"]
    assert ks == {
        "cfg": 7, "denoise": 1, "latent_image": ["5", 0], "model": ["4", 0], "negative": ["7", 0],
        "positive": ["6", 0], "sampler_name": "euler", "scheduler": "normal", "seed": 1234, "steps": 20,
    }
    assert ours["5"]["inputs"] == {"batch_size": 1, "height": 512, "width": 512}
    # the body SillyTavern posts parses to {"prompt": graph}
    assert json.loads(sillytavern_prompt_body(render_sillytavern(text, settings))) == {"prompt": st_graph}


def test_char_avatar_workflow_renders_exactly_as_sillytavern_does() -> None:
    text = fixture_text("Char_Avatar_Comfy_Workflow.json")
    avatar = png_with_big_text_chunk()
    settings = st_settings(char_avatar=avatar, seed=9007199254740991)
    st_graph = json.loads(render_sillytavern(text, settings))
    ours = render(json.loads(text), our_values(settings))
    assert ours == st_graph
    assert ours["10"]["inputs"]["image"] == avatar
    assert ours["3"]["inputs"]["denoise"] == 0.7 and ours["3"]["inputs"]["seed"] == 9007199254740991
    assert ours["13"]["inputs"]["width"] == 512
    assert ours["3"]["_meta"] == {"title": "KSampler"}


def test_avatar_fetch_failure_inserts_the_one_pixel_png_in_both() -> None:
    text = fixture_text("Char_Avatar_Comfy_Workflow.json")
    st_graph = json.loads(render_sillytavern(text, st_settings(char_avatar=None)))
    assert st_graph["10"]["inputs"]["image"] == PNG_PIXEL
    ours = render(json.loads(text), our_values(st_settings(char_avatar=PNG_PIXEL)))
    assert ours == st_graph


def test_random_seed_follows_sillytavern_range() -> None:
    text = fixture_text("Default_Comfy_Workflow.json")
    top = json.loads(render_sillytavern(text, st_settings(seed=-1), random_unit=0.9999999999999999))
    assert top["3"]["inputs"]["seed"] == 2**53 - 2  # Math.random() < 1, so 2^53 − 1 is never reached
    half = json.loads(render_sillytavern(text, st_settings(seed=-1), random_unit=0.5))
    assert half["3"]["inputs"]["seed"] == 4503599627370496  # the example body in clients.md §2.2
    low = json.loads(render_sillytavern(text, st_settings(seed=-1), random_unit=0.0))
    assert low["3"]["inputs"]["seed"] == 0


@pytest.mark.parametrize(
    "prompt",
    ['say "hi" \\ back', "two\nlines", "café ☕ 🐱 日本語", "100% sure %prompt% done"],
)
def test_json_escaping_matches_sillytavern_for_ordinary_tricky_text(prompt: str) -> None:
    text = fixture_text("Default_Comfy_Workflow.json")
    settings = st_settings(prompt=prompt)
    st_graph = json.loads(render_sillytavern(text, settings))
    assert st_graph["6"]["inputs"]["text"] == prompt
    assert render(json.loads(text), our_values(settings)) == st_graph


def test_dollar_quote_in_prompt_garbles_sillytavern_but_not_us() -> None:
    text = fixture_text("Default_Comfy_Workflow.json")
    prompt = "price tag $' and $& here"
    st_text = render_sillytavern(text, st_settings(prompt=prompt))
    with pytest.raises(json.JSONDecodeError):
        json.loads(st_text)  # SillyTavern splices the rest of the workflow into the prompt
    ours = render(json.loads(text), our_values(st_settings(prompt=prompt)))
    assert ours["6"]["inputs"]["text"] == prompt
    assert set(ours) == {"3", "4", "5", "6", "7", "8", "9"}


def test_dollar_ampersand_reinserts_the_token_in_sillytavern() -> None:
    out = js_replace_all('{"a": "%x%"}', '"%x%"', '"v $& w"')
    assert out == '{"a": "v "%x%" w"}'
    assert js_replace_all("a-b-a", "a", "[$`|$'|$$]") == "[|-b-a|$]-b-[a-b-||$]"


def test_custom_placeholder_is_a_string_in_sillytavern_and_typed_for_us() -> None:
    workflow = json.loads(fixture_text("Default_Comfy_Workflow.json"))
    workflow["3"]["inputs"]["denoise"] = "%strength%"
    text = json.dumps(workflow, indent=4)
    settings = st_settings(custom_placeholders=[("strength", "0.8")])
    st_graph = json.loads(render_sillytavern(text, settings))
    assert st_graph["3"]["inputs"]["denoise"] == "0.8"  # always a JSON string in SillyTavern
    values = our_values(settings) | {"strength": "0.8"}
    assert render(workflow, values) == st_graph  # plain mode: identical

    class Registry(dict):
        pass

    from typing import ClassVar

    from graphengine.node import Input, Node, NodeOutputs, Output

    class KSampler(Node):
        """Minimal declaration of KSampler's numeric widgets for typed conversion."""

        category: ClassVar[str] = "test"
        seed: int = Input(0)
        steps: int = Input(20)
        cfg: float = Input(8.0)
        denoise: float = Input(1.0)

        class Outputs(NodeOutputs):
            latent: int = Output()

    typed = render(workflow, values, Registry(KSampler=KSampler))
    assert typed["3"]["inputs"]["denoise"] == 0.8
    assert typed["3"]["inputs"]["cfg"] == 7.0 and isinstance(typed["3"]["inputs"]["cfg"], float)


def test_missing_setting_makes_sillytavern_send_undefined_but_we_report_it() -> None:
    text = fixture_text("Default_Comfy_Workflow.json")
    st_text = render_sillytavern(text, st_settings(model=SillyTavernSettings.__dataclass_fields__["model"].default))
    assert '"ckpt_name": undefined' in st_text
    with pytest.raises(json.JSONDecodeError):
        json.loads(st_text)
    values = our_values(st_settings())
    del values["model"]
    with pytest.raises(TemplateError) as info:
        render(json.loads(text), values)
    (problem,) = info.value.problems
    assert (problem.type, problem.placeholder, problem.node_id, problem.input_name) == (
        "unfilled_placeholder", "model", "4", "ckpt_name",
    )


def test_unknown_placeholder_stays_literal_in_sillytavern_and_is_an_error_for_us() -> None:
    workflow = json.loads(fixture_text("Default_Comfy_Workflow.json"))
    workflow["9"]["inputs"]["filename_prefix"] = "%folder%"
    text = json.dumps(workflow)
    st_graph = json.loads(render_sillytavern(text, st_settings()))
    assert st_graph["9"]["inputs"]["filename_prefix"] == "%folder%"
    with pytest.raises(TemplateError) as info:
        render(workflow, our_values(st_settings()))
    assert [(p.type, p.placeholder, p.node_id) for p in info.value.problems] == [("unknown_placeholder", "folder", "9")]


def test_embedded_placeholder_left_as_text_by_both_and_flagged_by_checker() -> None:
    workflow = json.loads(fixture_text("Default_Comfy_Workflow.json"))
    workflow["6"]["inputs"]["text"] = "photo of %prompt%"
    st_graph = json.loads(render_sillytavern(json.dumps(workflow), st_settings()))
    values = our_values(st_settings())
    assert st_graph["6"]["inputs"]["text"] == "photo of %prompt%"
    assert render(workflow, values) == st_graph
    flagged = check(workflow)["flagged"]
    assert [(f["name"], f["node_id"], f["placement"]) for f in flagged] == [("prompt", "6", "embedded")]


def test_fixture_placeholder_reports() -> None:
    report = check(json.loads(fixture_text("Char_Avatar_Comfy_Workflow.json")))
    present = {p["name"] for p in report["predefined"] if p["present"]}
    assert present == {"prompt", "negative_prompt", "model", "sampler", "scheduler", "steps", "scale",
                       "width", "height", "denoise", "seed", "char_avatar"}
    assert report["custom"] == [] and report["flagged"] == []


def test_non_image_avatar_is_rejected_before_reaching_the_engine() -> None:
    workflow = json.loads(fixture_text("Char_Avatar_Comfy_Workflow.json"))
    values = our_values(st_settings(char_avatar=base64.b64encode(b"<html>not an image</html>").decode()))
    with pytest.raises(TemplateError) as info:
        render(workflow, values)
    (problem,) = info.value.problems
    assert (problem.placeholder, problem.node_id, problem.input_name) == ("char_avatar", "10", "image")
