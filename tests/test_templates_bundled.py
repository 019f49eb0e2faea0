"""Every bundled template, rendered with its defaults, validates against the real built-in node
registry (class names, input names, types, ranges and combo values all right)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from graphengine.engine import Engine
from graphengine.templates import TemplateStore, check, render

OURS = ("text-to-image", "image-to-image-base64", "sdxl-text-to-image", "lora", "hires-fix", "inpaint",
        "image-to-image-upload")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, TemplateStore]:
    root = tmp_path_factory.mktemp("bundled")
    models = root / "models"
    # the files the defaults name; validation only checks that they are listed
    for folder, name in (("checkpoints", "graphengine-default.safetensors"), ("checkpoints", "sd_xl_base_1.0.safetensors"),
                         ("loras", "example-lora.safetensors")):
        (models / folder).mkdir(parents=True, exist_ok=True)
        (models / folder / name).write_bytes(b"")
    engine = Engine(data_dir=root / "data", models_dir=models)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buffer, "PNG")
    (engine.env.paths.input_dir / "example.png").write_bytes(buffer.getvalue())
    return engine, TemplateStore.for_data_dir(root / "data")


@pytest.mark.parametrize("name", OURS)
def test_bundled_template_validates_with_defaults(setup: tuple[Engine, TemplateStore], name: str) -> None:
    engine, store = setup
    template = store.get(name).template
    report = check(template, engine.registry)
    assert report["flagged"] == [], report["flagged"]
    prompt = render(template, {"prompt": "a lighthouse at dusk"}, engine.registry)
    validated = engine.validate(prompt)
    assert validated.outputs and not validated.node_errors
    assert any(node["class_type"] == "SaveImage" for node in prompt.values())


def test_default_text_to_image_targets_the_embedded_model(setup: tuple[Engine, TemplateStore]) -> None:
    engine, store = setup
    prompt = render(store.get("text-to-image").template, {}, engine.registry)
    by_class = {node["class_type"]: node["inputs"] for node in prompt.values()}
    assert by_class["CheckpointLoaderSimple"]["ckpt_name"] == "graphengine-default.safetensors"
    assert (by_class["EmptyLatentImage"]["width"], by_class["EmptyLatentImage"]["height"]) == (64, 64)
    sampler = by_class["KSampler"]
    assert (sampler["steps"], sampler["sampler_name"], sampler["scheduler"]) == (20, "euler", "normal")
    assert isinstance(sampler["seed"], int) and isinstance(sampler["cfg"], float)
    assert by_class["CLIPSetLastLayer"]["stop_at_clip_layer"] == -1
    assert json.loads(json.dumps(prompt)) == prompt
