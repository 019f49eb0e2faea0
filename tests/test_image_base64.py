"""nodes/image_base64.py: ETN_LoadImageBase64 and ETN_LoadMaskBase64 (SillyTavern's avatar workflow)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from images_context import ImagesContext, make_env
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from graphengine.environment import Limits
from graphengine.errors import NodeInputError
from graphengine.files import ImageTooLarge
from graphengine.node import object_info
from nodes.image_base64 import LoadImageBase64, LoadMaskBase64, pack

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# SillyTavern's fallback avatar: a 1×1 grey+alpha PNG.
ST_FALLBACK_AVATAR = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


@pytest.fixture()
def env(tmp_path: Path):
    return make_env(tmp_path / "data")


def _encoded(image: PILImage.Image, fmt: str = "PNG", **save: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _random_image(width: int, height: int, mode: str) -> PILImage.Image:
    rng = np.random.default_rng(width + height)
    return PILImage.fromarray(rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8), mode=mode)


def test_object_info_matches_the_tooling_nodes(env) -> None:
    assert [n.class_type for n in pack().nodes] == ["ETN_LoadImageBase64", "ETN_LoadMaskBase64"]
    info = object_info(LoadImageBase64, env)
    assert info["input"]["required"]["image"][0] == "STRING"
    assert info["input"]["required"]["image"][1]["multiline"] is False
    assert info["output"] == ["IMAGE", "MASK"] and info["category"] == "external_tooling"
    assert object_info(LoadMaskBase64, env)["output"] == ["MASK"]


def test_sillytavern_fallback_avatar(env) -> None:
    out = LoadImageBase64(image=ST_FALLBACK_AVATAR).run(ImagesContext(env))
    assert out.image.pixels.shape == (1, 1, 1, 3)
    assert out.mask.values.shape == (1, 1, 1)  # it has an alpha channel: mask = 1 - alpha


def test_opaque_image_gets_comfyui_empty_mask(env) -> None:
    out = LoadImageBase64(image=_encoded(_random_image(3, 2, "RGB"))).run(ImagesContext(env))
    assert out.mask.values.shape == (1, 64, 64) and not out.mask.values.any()


def test_character_card_png_with_big_text_chunks_and_alpha(env) -> None:
    card = _random_image(7, 5, "RGBA")
    info = PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps({"name": "x" * 50_000}).encode()).decode())
    out = LoadImageBase64(image=_encoded(card, pnginfo=info)).run(ImagesContext(env))
    array = np.asarray(card, dtype=np.float32) / 255.0
    assert torch.equal(out.image.pixels[0], torch.from_numpy(array[..., :3]))
    assert torch.allclose(out.mask.values[0], 1.0 - torch.from_numpy(array[..., 3]))


@pytest.mark.parametrize("wrap", [
    lambda b: f"data:image/png;base64,{b}",
    lambda b: f"DATA:image/png;charset=utf-8;base64,{b}",
    lambda b: "\n".join(b[i : i + 76] for i in range(0, len(b), 76)),  # MIME line breaks
    lambda b: b.rstrip("="),  # padding dropped
    lambda b: f"  {b}\n",
    lambda b: b.replace("+", "-").replace("/", "_"),  # URL-safe alphabet
])
def test_accepted_spellings(env, wrap) -> None:
    source = _random_image(9, 3, "RGB")
    out = LoadImageBase64(image=wrap(_encoded(source))).run(ImagesContext(env))
    assert torch.equal(out.image.pixels[0], torch.from_numpy(np.asarray(source, dtype=np.float32) / 255.0))


def test_jpeg_and_webp_payloads(env) -> None:
    for fmt in ("JPEG", "WEBP"):
        out = LoadImageBase64(image=_encoded(_random_image(8, 8, "RGB"), fmt)).run(ImagesContext(env))
        assert out.image.pixels.shape == (1, 8, 8, 3)


@pytest.mark.parametrize(("payload", "cause"), [
    ("", "empty"),
    ("%char_avatar%", "not valid base64"),  # an unsubstituted SillyTavern placeholder
    ("not base64 at all!", "not valid base64"),
    ("iVBORw0KGgoAAAANSUhEUg==extra", "not valid base64"),
    ("A", "not valid base64"),
    ("data:image/png,rawbytes", "without ';base64,'"),
    (base64.b64encode(b"just some text, not a picture").decode(), "not an image"),
    (base64.b64encode(b'{"json": true}').decode(), "JSON"),
    (ST_FALLBACK_AVATAR[:40], "image"),  # truncated PNG
])
def test_bad_payloads_name_the_cause(env, payload: str, cause: str) -> None:
    with pytest.raises(NodeInputError) as caught:
        LoadImageBase64(image=payload).run(ImagesContext(env))
    assert cause in str(caught.value)
    assert str(caught.value).startswith("image")


def test_image_over_pixel_cap(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", limits=Limits(max_image_pixels=32 * 32))
    with pytest.raises(ImageTooLarge):
        LoadImageBase64(image=_encoded(_random_image(64, 32, "RGB"))).run(ImagesContext(env))
    assert LoadImageBase64(image=_encoded(_random_image(32, 32, "RGB"))).run(ImagesContext(env))


def test_payload_over_byte_cap(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", limits=Limits(max_upload_bytes=1000))
    with pytest.raises(NodeInputError, match="limit is 1000 bytes"):
        LoadImageBase64(image="A" * 4000).run(ImagesContext(env))


def test_load_mask_first_channel(env) -> None:
    source = _random_image(6, 4, "RGBA")
    mask = LoadMaskBase64(mask=_encoded(source)).run(ImagesContext(env)).mask.values
    assert mask.shape == (1, 4, 6)
    assert torch.equal(mask[0], torch.from_numpy(np.asarray(source, dtype=np.float32)[..., 0] / 255.0))


def test_load_mask_grey_and_bilevel(env) -> None:
    grey = PILImage.fromarray(np.array([[0, 128, 255]], dtype=np.uint8), mode="L")
    mask = LoadMaskBase64(mask=_encoded(grey)).run(ImagesContext(env)).mask.values
    assert torch.allclose(mask, torch.tensor([[[0.0, 128 / 255, 1.0]]]))
    bilevel = PILImage.new("1", (3, 2), 1)
    assert LoadMaskBase64(mask=_encoded(bilevel)).run(ImagesContext(env)).mask.values.min() == 1.0


def test_load_mask_bad_payload(env) -> None:
    with pytest.raises(NodeInputError, match="^mask"):
        LoadMaskBase64(mask="@@@").run(ImagesContext(env))


def test_avatar_workflow_fixture_uses_this_node() -> None:
    fixture = SHARED / "fixtures" / "sillytavern" / "Char_Avatar_Comfy_Workflow.json"
    if not fixture.is_file():
        pytest.skip("shared fixtures not present")
    workflow = json.loads(fixture.read_text())
    loaders = [node for node in workflow.values() if node["class_type"] == "ETN_LoadImageBase64"]
    assert loaders and set(loaders[0]["inputs"]) == {name for name in LoadImageBase64.model_fields}
