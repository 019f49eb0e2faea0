"""Every bundled template in ``workflows/``, rendered with its own defaults (the model placeholder
pointed at the micro checkpoint, the files it names put where it expects them) and run on the micro
model through the default Engine: it succeeds and an image comes out.

The SDXL template needs an SDXL checkpoint: with its defaults it is rendered and validated, and it runs
on an SDXL-shaped micro checkpoint at 64×64 for 2 steps (1024² × 25 steps takes minutes on a CPU).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from graphengine.templates import TemplateStore, find_occurrences, render
from graphengine.templates.store import BUNDLED_DIR
from tests.e2e_support import (
    MICRO_NAME,
    MicroWorld,
    ServedApp,
    b64,
    gradient_png,
    read_png,
)

pytest_plugins = ("tests.e2e_support",)  # the session fixture micro_world

SDXL_TEMPLATES = {"sdxl-text-to-image"}


def bundled_store() -> TemplateStore:
    return TemplateStore(BUNDLED_DIR / "__no_user_templates__", BUNDLED_DIR)


BUNDLED = bundled_store().names()


@pytest.fixture(scope="module")
def world(micro_world: MicroWorld) -> MicroWorld:
    """Put the files the templates' defaults name where they expect them: the LoRA (``lora``) and
    the uploaded input image (``image-to-image-upload``)."""
    from graphengine.models.lora_maker import make_lora

    defaults = {name: bundled_store().get(name).template.defaults for name in BUNDLED}
    for name, values in defaults.items():
        if "lora" in values:
            make_lora(micro_world.model_file("loras", values["lora"]), micro_world.checkpoint, seed=5)
        if "image" in values:
            target = micro_world.input_dir / values["image"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gradient_png(72, 56))
    return micro_world


def values_for(name: str, **extra: Any) -> dict[str, Any]:
    """The template's defaults, with the model pointed at micro and the avatars a small real PNG."""
    template = bundled_store().get(name).template
    used = {occurrence.name for occurrence in find_occurrences(template.workflow)}
    values: dict[str, Any] = {}
    if "model" in used:
        values["model"] = MICRO_NAME
    for avatar in ("char_avatar", "user_avatar"):
        if avatar in used:
            values[avatar] = b64(gradient_png(40, 40))
    values.update(extra)
    return values


def expected_size(prompt: dict[str, Any]) -> tuple[int, int] | None:
    """The final image size the rendered graph asks for: the last resize or empty latent on the way,
    else the size of the base64 image it starts from."""
    for class_type in ("LatentUpscale", "ImageScale", "EmptyLatentImage"):
        for node in prompt.values():
            if node["class_type"] == class_type:
                return node["inputs"]["width"], node["inputs"]["height"]
    for node in prompt.values():
        if node["class_type"] == "ETN_LoadImageBase64":
            return read_png(base64.b64decode(node["inputs"]["image"]))[0]
    return None


def test_every_bundled_template_is_listed() -> None:
    assert {"text-to-image", "image-to-image-base64", "sdxl-text-to-image", "lora", "hires-fix", "inpaint",
            "image-to-image-upload"} <= set(BUNDLED)


@pytest.mark.parametrize("name", [n for n in BUNDLED if n not in SDXL_TEMPLATES])
def test_bundled_template_runs_on_micro_with_its_defaults(world: MicroWorld, name: str) -> None:
    engine = world.engine
    prompt = render(bundled_store().get(name).template, values_for(name), engine.registry)
    run = engine.run(prompt)
    assert run.status == "success", run.error
    images = [image for output in run.outputs.values() for image in output.get("images", [])]
    if not any(node["class_type"] in ("SaveImage", "PreviewImage") for node in prompt.values()):
        texts = [text for output in run.outputs.values() for text in output.get("text", [])]
        assert texts, f"{name} produced nothing"  # a text-only demo workflow
        return
    assert images, f"{name} produced no image"
    size, _, text = read_png(world.file_of(images[0]))
    assert size == expected_size(prompt)
    assert "prompt" in text


def test_sdxl_template_renders_and_validates_with_its_defaults(world: MicroWorld) -> None:
    for name in SDXL_TEMPLATES:
        template = bundled_store().get(name).template
        prompt = render(template, values_for(name), world.engine.registry)
        validated = world.engine.validate(prompt)
        assert validated.outputs and expected_size(prompt) == (1024, 1024)


@pytest.mark.slow
def test_sdxl_template_runs_on_an_sdxl_shaped_micro_checkpoint(world: MicroWorld) -> None:
    model = world.micro_sdxl()
    for name in SDXL_TEMPLATES:
        values = values_for(name, model=model, width=64, height=64, steps=2, seed=4)
        prompt = render(bundled_store().get(name).template, values, world.engine.registry)
        run = world.engine.run(prompt)
        assert run.status == "success", run.error
        images = [image for output in run.outputs.values() for image in output.get("images", [])]
        assert images and read_png(world.file_of(images[0]))[0] == (64, 64)


def test_upload_then_run_the_upload_template_over_http(world: MicroWorld) -> None:
    """Talemate's flow with a template: ``POST /upload/image`` into a subfolder, then
    ``POST /templates/image-to-image-upload/run`` naming ``subfolder/name``; the result is viewable."""
    with ServedApp(world) as server, httpx.Client(base_url=server.base, timeout=30) as client:
        uploaded = client.post(
            "/upload/image",
            files={"image": ("e2e upload.png", gradient_png(70, 50), "image/png")},
            data={"type": "input", "subfolder": "e2e-uploads", "overwrite": "true"},
        )
        assert uploaded.status_code == 200, uploaded.text
        stored = uploaded.json()
        image = f"{stored['subfolder']}/{stored['name']}"
        response = client.post("/templates/image-to-image-upload/run",
                               json={"model": MICRO_NAME, "image": image, "steps": 2, "seed": 3})
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
        deadline = time.monotonic() + 60
        while not (entry := client.get(f"/history/{prompt_id}").json()):
            assert time.monotonic() < deadline, "the template run never finished"
            time.sleep(0.05)
        item = entry[prompt_id]
        assert item["status"]["status_str"] == "success"
        assert item["prompt"][2]["10"]["inputs"]["image"] == image
        output = item["outputs"]["9"]["images"][0]
        view = client.get("/view", params=output)
        assert view.status_code == 200 and read_png(view.content)[0] == (64, 64)
