"""nodes/output.py: SaveImage, PreviewImage, SaveLatent, LoadLatent, SaveImageWebsocket, ETN_SendImageWebSocket."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from images_context import ImagesContext, make_env
from PIL import Image as PILImage
from safetensors.torch import load_file, save_file

from graphengine.errors import Interrupted, NodeInputError
from graphengine.files import read_png_text
from graphengine.node import NEVER_CACHE, object_info
from nodes.output import (
    LoadLatent,
    PreviewImage,
    SaveImage,
    SaveImageWebsocket,
    SaveLatent,
    SendImageWebSocket,
    pack,
)
from nodes.sockets import Image, Latent

PROMPT = {"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "SillyTavern", "images": ["8", 0]}}}


@pytest.fixture()
def env(tmp_path: Path):
    return make_env(tmp_path / "data")


def _pixels(batch: int = 1, height: int = 4, width: int = 6) -> torch.Tensor:
    return torch.rand((batch, height, width, 3), generator=torch.Generator().manual_seed(batch + height + width))


def test_pack_and_object_info(env) -> None:
    names = [n.class_type for n in pack().nodes]
    assert names == ["SaveImage", "PreviewImage", "SaveLatent", "LoadLatent", "SaveImageWebsocket",
                     "ETN_SendImageWebSocket"]
    info = object_info(SaveImage, env)
    assert info["output_node"] is True and info["output"] == []
    assert info["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert info["input"]["required"]["filename_prefix"][1]["default"] == "ComfyUI"
    assert object_info(SendImageWebSocket, env)["input"]["required"]["format"] == [["PNG", "JPEG"], {"default": "PNG"}]
    assert object_info(SaveImageWebsocket, env)["category"] == "api/image"


def test_save_image_names_ui_and_quantisation(env) -> None:
    pixels = torch.tensor([[[[0.0, 0.5, 1.0], [1.2, -0.3, 0.999], [float("nan"), 0.00392, 0.00393]]]])
    ctx = ImagesContext(env, prompt=PROMPT, extra_pnginfo={"workflow": {"nodes": [1]}})
    out = SaveImage(images=Image(pixels), filename_prefix="SillyTavern").run(ctx)
    ctx.finish()
    assert out.ui == {"images": [{"filename": "SillyTavern_00001_.png", "subfolder": "", "type": "output"}]}
    path = env.paths.output_dir / "SillyTavern_00001_.png"
    with PILImage.open(path) as stored_image:
        stored = np.asarray(stored_image)
    # clip(255·x, 0, 255) truncated to uint8, NaN → 0 (ComfyUI's rounding)
    assert stored.tolist() == [[[0, 127, 255], [255, 0, 254], [0, 0, 1]]]
    text = read_png_text(path.read_bytes())
    assert json.loads(text["prompt"]) == PROMPT
    assert json.loads(text["workflow"]) == {"nodes": [1]}


def test_save_image_batch_counts_up_and_continues_after_existing(env) -> None:
    (env.paths.output_dir / "ComfyUI_00041_.png").write_bytes(b"old")
    ctx = ImagesContext(env)
    out = SaveImage(images=Image(_pixels(3)), filename_prefix="ComfyUI").run(ctx)
    ctx.finish()
    assert [entry["filename"] for entry in out.ui["images"]] == [
        "ComfyUI_00042_.png", "ComfyUI_00043_.png", "ComfyUI_00044_.png"]
    for entry in out.ui["images"]:
        with PILImage.open(env.paths.output_dir / entry["filename"]) as written:
            assert written.size == (6, 4)


def test_save_image_reserves_names_before_background_write(env) -> None:
    first_ctx, second_ctx = ImagesContext(env), ImagesContext(env)
    first = SaveImage(images=Image(_pixels()), filename_prefix="x").run(first_ctx)
    second = SaveImage(images=Image(_pixels()), filename_prefix="x").run(second_ctx)  # before any write
    first_ctx.finish()
    second_ctx.finish()
    assert first.ui["images"][0]["filename"] == "x_00001_.png"
    assert second.ui["images"][0]["filename"] == "x_00002_.png"


def test_save_image_subfolder_and_tokens(env) -> None:
    ctx = ImagesContext(env)
    out = SaveImage(images=Image(_pixels(2, 8, 16)), filename_prefix="runs/%date:yyyy%/pic_%width%x%height%_%batch_num%").run(ctx)
    ctx.finish()
    entries = out.ui["images"]
    assert re.fullmatch(r"runs/\d{4}", entries[0]["subfolder"])
    assert [e["filename"] for e in entries] == ["pic_16x8_0_00001_.png", "pic_16x8_1_00002_.png"]
    assert (env.paths.output_dir / entries[1]["subfolder"] / entries[1]["filename"]).is_file()


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/abs", "..\\win", "a/../../b", "%2e%2e/x"])
def test_save_image_refuses_prefix_outside_output(env, prefix: str) -> None:
    with pytest.raises(NodeInputError, match="not allowed"):
        SaveImage(images=Image(_pixels()), filename_prefix=prefix).run(ImagesContext(env))
    assert not any(env.paths.root.parent.glob("*.png"))


def test_save_image_without_metadata(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", write_metadata=False)
    ctx = ImagesContext(env, prompt=PROMPT, extra_pnginfo={"workflow": {}})
    SaveImage(images=Image(_pixels()), filename_prefix="plain").run(ctx)
    ctx.finish()
    assert read_png_text((env.paths.output_dir / "plain_00001_.png").read_bytes()) == {}


def test_save_image_failed_write_removes_the_reserved_file(env, monkeypatch: pytest.MonkeyPatch) -> None:
    import nodes.output

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nodes.output, "encode_png", broken)
    ctx = ImagesContext(env)
    SaveImage(images=Image(_pixels()), filename_prefix="broken").run(ctx)
    with pytest.raises(OSError, match="disk full"):
        ctx.finish()
    assert not list(env.paths.output_dir.glob("broken*"))


def test_preview_image_goes_to_temp(env) -> None:
    ctx = ImagesContext(env, prompt=PROMPT)
    out = PreviewImage(images=Image(_pixels(2))).run(ctx)
    ctx.finish()
    entries = out.ui["images"]
    assert [e["type"] for e in entries] == ["temp", "temp"]
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", entries[0]["filename"])
    assert entries[1]["filename"].endswith("_00002_.png")
    assert (env.paths.temp_dir / entries[0]["filename"]).is_file()
    assert not list(env.paths.output_dir.iterdir())


def test_save_latent_and_load_latent_round_trip(env) -> None:
    samples = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(7))
    ctx = ImagesContext(env, prompt=PROMPT)
    out = SaveLatent(samples=Latent(samples), filename_prefix="latents/ComfyUI").run(ctx)
    ctx.finish()
    entry = out.ui["latents"][0]
    assert entry == {"filename": "ComfyUI_00001_.latent", "subfolder": "latents", "type": "output"}
    saved = env.paths.output_dir / "latents" / entry["filename"]
    tensors = load_file(saved)
    assert set(tensors) == {"latent_tensor", "latent_format_version_0"}
    from safetensors import safe_open

    with safe_open(saved, "pt") as handle:
        assert json.loads(handle.metadata()["prompt"]) == PROMPT

    (env.paths.input_dir / "mine.latent").write_bytes(saved.read_bytes())
    assert "mine.latent" in object_info(LoadLatent, env)["input"]["required"]["latent"][0]
    assert LoadLatent.validate_inputs({"latent": "mine.latent"}, env) is None
    loaded = LoadLatent(latent="mine.latent").run(ImagesContext(env)).latent
    assert torch.equal(loaded.samples, samples)


def test_load_latent_unversioned_file_is_rescaled(env) -> None:
    samples = torch.ones((1, 4, 2, 2))
    save_file({"latent_tensor": samples}, env.paths.input_dir / "old.latent")
    loaded = LoadLatent(latent="old.latent").run(ImagesContext(env)).latent
    assert torch.allclose(loaded.samples, samples / 0.18215)


def test_load_latent_bad_inputs(env) -> None:
    assert "Invalid latent file" in LoadLatent.validate_inputs({"latent": "../x.latent"}, env)
    assert "Invalid latent file" in LoadLatent.validate_inputs({"latent": "none.latent"}, env)
    (env.paths.input_dir / "junk.latent").write_bytes(b"\x00" * 40)
    with pytest.raises(NodeInputError, match="not a readable"):
        LoadLatent(latent="junk.latent").run(ImagesContext(env))
    save_file({"other": torch.zeros(1)}, env.paths.input_dir / "wrong.latent")
    with pytest.raises(NodeInputError, match="latent_tensor"):
        LoadLatent(latent="wrong.latent").run(ImagesContext(env))


def test_load_latent_fingerprint_follows_content(env) -> None:
    path = env.paths.input_dir / "a.latent"
    save_file({"latent_tensor": torch.zeros(1, 4, 2, 2)}, path)
    before = LoadLatent.fingerprint({"latent": "a.latent"}, env)
    save_file({"latent_tensor": torch.ones(1, 4, 2, 2)}, path)
    assert LoadLatent.fingerprint({"latent": "a.latent"}, env) != before


def test_save_image_websocket_sends_every_image_without_files(env) -> None:
    ctx = ImagesContext(env)
    pixels = _pixels(3)
    out = SaveImageWebsocket(images=Image(pixels)).run(ctx)
    assert out.ui is None
    assert [fmt for _, fmt in ctx.sent_images] == ["PNG", "PNG", "PNG"]
    assert np.asarray(ctx.sent_images[1][0]).tolist() == np.clip(pixels[1].numpy() * 255, 0, 255).astype(np.uint8).tolist()
    assert ctx.progress_calls == [(0, 3), (1, 3), (2, 3)]
    assert SaveImageWebsocket.fingerprint({}, env) is NEVER_CACHE
    assert SaveImageWebsocket.fingerprint({}, env) != SaveImageWebsocket.fingerprint({}, env)
    assert not any(env.paths.output_dir.iterdir()) and not any(env.paths.temp_dir.iterdir())


def test_save_image_websocket_stops_on_interrupt(env) -> None:
    ctx = ImagesContext(env, interrupted=True)
    with pytest.raises(Interrupted):
        SaveImageWebsocket(images=Image(_pixels(2))).run(ctx)
    assert ctx.sent_images == []


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_etn_send_image_websocket(env, fmt: str) -> None:
    ctx = ImagesContext(env)
    out = SendImageWebSocket(images=Image(_pixels(2)), format=fmt).run(ctx)
    assert [f for _, f in ctx.sent_images] == [fmt, fmt]
    expected = {"source": "websocket", "content-type": f"image/{fmt.lower()}", "type": "output"}
    assert out.ui == {"images": [expected, expected]}


# --- through the real engine --------------------------------------------------------------------------------


def _engine(env):
    engine_module = pytest.importorskip("graphengine.engine")
    return engine_module.Engine(packs=["nodes.image", "nodes.image_base64", "nodes.latent", "nodes.output"],
                                env=env)


def _avatar_prompt(image_b64: str) -> dict:
    return {
        "10": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": image_b64}, "_meta": {"title": "avatar"}},
        "13": {"class_type": "ImageScale", "inputs": {"image": ["10", 0], "upscale_method": "bicubic",
                                                      "width": 16, "height": 8, "crop": "center"}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": "SillyTavern"}},
        "20": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["13", 0]}},
        "21": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "22": {"class_type": "SaveLatent", "inputs": {"samples": ["21", 0], "filename_prefix": "latents/x"}},
    }


def _b64_png(width: int, height: int) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (200, 100, 50)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_engine_runs_the_image_nodes_end_to_end(env) -> None:
    from graphengine.events import ListSink, PreviewImage as PreviewEvent

    engine = _engine(env)
    try:
        sink = ListSink()
        prompt = _avatar_prompt(_b64_png(32, 32))
        run = engine.run(prompt, extra_data={"extra_pnginfo": {"workflow": {"v": 1}}}, sink=sink)
        assert run.status == "success", run.error
        saved = run.outputs["9"]["images"][0]
        assert saved == {"filename": "SillyTavern_00001_.png", "subfolder": "", "type": "output"}
        path = env.paths.output_dir / saved["filename"]
        with PILImage.open(path) as written:
            assert written.size == (16, 8)  # written before the run reported success
        text = read_png_text(path.read_bytes())
        assert json.loads(text["prompt"])["13"]["inputs"]["width"] == 16
        assert json.loads(text["workflow"]) == {"v": 1}
        assert (env.paths.output_dir / "latents" / "x_00001_.latent").is_file()
        results = [e for e in sink.of_type(PreviewEvent) if e.is_result]
        assert len(results) == 1 and results[0].node == "20" and results[0].image.size == (16, 8)

        again = ListSink()
        rerun = engine.run(prompt, sink=again)
        assert "9" in rerun.cached and "20" in rerun.executed  # the websocket output always re-sends
        assert len([e for e in again.of_type(PreviewEvent) if e.is_result]) == 1
    finally:
        engine.close()


def test_engine_bad_inputs_fail_cleanly_and_next_prompt_succeeds(env) -> None:
    from graphengine.errors import WorkflowInvalid

    engine = _engine(env)
    try:
        bad = engine.run(_avatar_prompt("%char_avatar%"))
        assert bad.status == "error"
        assert bad.error.node_id == "10" and "not valid base64" in bad.error.exception_message

        with pytest.raises(WorkflowInvalid) as caught:
            engine.validate({"1": {"class_type": "LoadImage", "inputs": {"image": "../../etc/passwd"}},
                             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
        assert "Invalid image file" in json.dumps(caught.value.body)

        with pytest.raises(WorkflowInvalid) as caught:
            engine.validate({"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 500, "height": 512,
                                                                                 "batch_size": 1}},
                             "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0]}}})
        assert "multiple of 8" in json.dumps(caught.value.body)

        good = engine.run(_avatar_prompt(_b64_png(8, 8)))
        assert good.status == "success"
    finally:
        engine.close()
