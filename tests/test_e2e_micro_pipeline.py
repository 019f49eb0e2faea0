"""Every issue-3 node on the micro checkpoint, through the default Engine, in a few real graphs.

What a user would notice is asserted: files written (names, sizes, PNG text), latents saved and
reloaded, determinism, what changes the picture (LoRA, embeddings), cache hits on a re-run, images
handed back over the websocket path without touching disk, and clear errors for bad input after
which the next prompt still succeeds.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from graphengine.errors import WorkflowInvalid
from graphengine.events import ListSink
from graphengine.events import PreviewImage as PreviewImageEvent
from tests.e2e_support import (
    MICRO_NAME,
    MicroWorld,
    b64,
    gradient_png,
    huge_png_header_only,
    read_png,
)

pytest_plugins = ("tests.e2e_support",)  # the session fixture micro_world

LORA = "e2e-lora.safetensors"
VAE = "e2e-vae.safetensors"
STYLE_A, STYLE_B = "e2e-style-a", "e2e-style-b"
SOURCE = "e2e/source.png"


@pytest.fixture(scope="module")
def world(micro_world: MicroWorld) -> MicroWorld:
    """The session world plus this module's assets: a LoRA, a standalone VAE, two textual-inversion
    embeddings and an input image with an alpha channel."""
    import torch
    from safetensors.torch import load_file, save_file

    from graphengine.models.lora_maker import make_lora

    make_lora(micro_world.model_file("loras", LORA), micro_world.checkpoint, seed=3, scale=0.2)
    weights = load_file(str(micro_world.checkpoint))
    prefix = "first_stage_model."
    vae_weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    vae_weights["decoder.conv_out.bias"] = vae_weights["decoder.conv_out.bias"] + 0.4  # a brighter decoder
    save_file(vae_weights, str(micro_world.model_file("vae", VAE)))
    width = weights["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"].shape[1]
    generator = torch.Generator().manual_seed(11)
    for name in (STYLE_A, STYLE_B):
        vectors = torch.randn((2, width), generator=generator) * 0.5
        save_file({"emb_params": vectors}, str(micro_world.model_file("embeddings", name + ".safetensors")))
    source = micro_world.input_dir / SOURCE
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(gradient_png(80, 60, alpha=True))
    return micro_world


# --- graph building -----------------------------------------------------------------------------------


def base_graph(ckpt: str = MICRO_NAME, *, width: int = 64, height: int = 64, batch: int = 1, seed: int = 1,
               steps: int = 2, text: str = "a cat", output: str = "PreviewImage") -> dict[str, Any]:
    graph: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], "seed": seed,
            "steps": steps, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": output, "inputs": {"images": ["8", 0]}},
    }
    if output == "SaveImage":
        graph["9"]["inputs"]["filename_prefix"] = "e2e/base"
    return graph


def ok(run: Any) -> Any:
    assert run.status == "success", run.error
    return run


def image_files(world: MicroWorld, run: Any, node: str) -> list[Path]:
    files = [world.file_of(image) for image in run.outputs[node]["images"]]
    assert all(path.is_file() for path in files)
    return files


def pixels_of(world: MicroWorld, run: Any, node: str = "9") -> list[bytes]:
    return [read_png(path)[1] for path in image_files(world, run, node)]


def latent_of(world: MicroWorld, run: Any, node: str) -> Any:
    from safetensors.torch import load_file

    entry = run.outputs[node]["latents"][0]
    return load_file(str(world.file_of(entry)))["latent_tensor"]


def loras_and_areas_graph(*, strength: float = 0.8, area_text: str = "((blue sky))",
                          text: str = f"a (red:1.3) cat, embedding:{STYLE_A}") -> dict[str, Any]:
    graph = base_graph(width=96, height=64, batch=2, text=text, output="SaveImage")
    graph["9"]["inputs"]["filename_prefix"] = "e2e/t2i"
    graph.update({
        "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": LORA,
                                                      "strength_model": strength, "strength_clip": strength}},
        "11": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["10", 0], "lora_name": LORA,
                                                               "strength_model": strength / 2}},
        "12": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["10", 1], "stop_at_clip_layer": -2}},
        "14": {"class_type": "CLIPTextEncode", "inputs": {"text": area_text, "clip": ["12", 0]}},
        "15": {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["14", 0], "width": 64, "height": 64,
                                                               "x": 32, "y": 0, "strength": 0.8}},
        "16": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["15", 0]}},
    })
    graph["6"]["inputs"]["clip"] = ["12", 0]
    graph["7"]["inputs"]["clip"] = ["12", 0]
    graph["3"]["inputs"].update(model=["11", 0], positive=["16", 0], sampler_name="euler", scheduler="karras")
    return graph


# --- text to image: loaders, LoRA, clip skip, emphasis, embeddings, areas, cache ------------------------


def test_text_to_image_with_loras_clip_skip_embedding_and_areas(world: MicroWorld) -> None:
    engine = world.engine
    graph = loras_and_areas_graph()
    first = ok(engine.run(graph, extra_data={"extra_pnginfo": {"workflow": {"note": "e2e"}}}))
    files = image_files(world, first, "9")
    assert [p.parent.name for p in files] == ["e2e", "e2e"]
    assert all(p.name.startswith("t2i_") and p.name.endswith("_.png") for p in files)
    (size_a, pixels_a, text_a), (size_b, pixels_b, _) = (read_png(p) for p in files)
    assert size_a == size_b == (96, 64) and pixels_a != pixels_b  # batch of 2, each with its own noise
    assert json.loads(text_a["prompt"])["6"]["inputs"]["text"] == graph["6"]["inputs"]["text"]
    assert json.loads(text_a["workflow"]) == {"note": "e2e"}

    again = ok(engine.run(graph))
    assert set(again.cached) == set(graph) and again.executed == []
    assert again.outputs == first.outputs  # the same files, replayed from the cache

    changed = loras_and_areas_graph(area_text="((green sea))")
    partial = ok(engine.run(changed))
    assert set(partial.executed) == {"14", "15", "16", "3", "8", "9"}
    assert {"4", "10", "11", "12", "6", "7", "5"} <= set(partial.cached)
    assert pixels_of(world, partial)[0] != pixels_a


def test_lora_strength_and_embedding_content_change_the_image(world: MicroWorld) -> None:
    engine = world.engine
    baseline = pixels_of(world, ok(engine.run(loras_and_areas_graph())))[0]
    no_lora = pixels_of(world, ok(engine.run(loras_and_areas_graph(strength=0.0))))[0]
    other_embedding = loras_and_areas_graph(text=f"a (red:1.3) cat, embedding:{STYLE_B}")
    embedding_b = pixels_of(world, ok(engine.run(other_embedding)))[0]
    no_emphasis = pixels_of(world, ok(engine.run(loras_and_areas_graph(text=f"a red cat, embedding:{STYLE_A}"))))[0]
    assert baseline != no_lora
    assert baseline != embedding_b  # same prompt text, different embedding file: the vectors are used
    assert baseline != no_emphasis


def test_lora_leaves_the_base_model_untouched(world: MicroWorld) -> None:
    """A LoRA patches copies: the plain checkpoint gives the same image before, after, and beside it."""
    engine = world.engine
    plain = base_graph(seed=13)
    with_lora = base_graph(seed=13)
    with_lora["10"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": LORA,
                                                               "strength_model": 1.0, "strength_clip": 1.0}}
    with_lora["3"]["inputs"]["model"] = ["10", 0]
    with_lora["6"]["inputs"]["clip"] = ["10", 1]
    with_lora["7"]["inputs"]["clip"] = ["10", 1]
    before = pixels_of(world, ok(engine.run(plain)))
    patched = pixels_of(world, ok(engine.run(with_lora)))
    after_run = ok(engine.run(plain))
    assert "3" in after_run.executed and pixels_of(world, after_run) == before != patched

    side_by_side = {**with_lora, **{f"2{k}": v for k, v in plain.items() if k in ("3", "6", "7", "8", "9")}}
    side_by_side["23"] = {"class_type": "KSampler", "inputs": {**plain["3"]["inputs"], "positive": ["26", 0],
                                                               "negative": ["27", 0]}}
    side_by_side["28"] = {"class_type": "VAEDecode", "inputs": {"samples": ["23", 0], "vae": ["4", 2]}}
    side_by_side["29"] = {"class_type": "PreviewImage", "inputs": {"images": ["28", 0]}}
    both = ok(engine.run(side_by_side))
    assert pixels_of(world, both, "29") == before and pixels_of(world, both, "9") == patched


# --- samplers, schedulers, KSamplerAdvanced, latents on disk ---------------------------------------------


def test_samplers_schedulers_and_split_sampling(world: MicroWorld) -> None:
    graph = base_graph(steps=4, seed=3)
    del graph["8"], graph["9"]
    common = {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], "cfg": 5.0}
    advanced = {**common, "noise_seed": 3, "steps": 4, "sampler_name": "euler", "scheduler": "normal"}
    graph.update({
        "20": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "e2e/latents/full"}},
        "21": {"class_type": "KSamplerAdvanced", "inputs": {**advanced, "add_noise": "enable", "start_at_step": 0,
                                                            "end_at_step": 2, "return_with_leftover_noise": "enable"}},
        "22": {"class_type": "KSamplerAdvanced", "inputs": {**advanced, "latent_image": ["21", 0], "add_noise": "disable",
                                                            "start_at_step": 2, "end_at_step": 10000,
                                                            "return_with_leftover_noise": "disable"}},
        "23": {"class_type": "SaveLatent", "inputs": {"samples": ["22", 0], "filename_prefix": "e2e/latents/split"}},
        "24": {"class_type": "SaveLatent", "inputs": {"samples": ["21", 0], "filename_prefix": "e2e/latents/half"}},
    })
    pairs = [("dpmpp_2m", "karras"), ("euler_ancestral", "simple"), ("uni_pc", "sgm_uniform"), ("ddim", "ddim_uniform")]
    for index, (sampler, scheduler) in enumerate(pairs):
        graph[f"3{index}"] = {"class_type": "KSampler", "inputs": {**common, "seed": 3, "steps": 3, "denoise": 1.0,
                                                                  "sampler_name": sampler, "scheduler": scheduler}}
        graph[f"4{index}"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"3{index}", 0], "vae": ["4", 2]}}
        graph[f"5{index}"] = {"class_type": "PreviewImage", "inputs": {"images": [f"4{index}", 0]}}
    run = ok(world.engine.run(graph))

    full, split, half = (latent_of(world, run, node) for node in ("20", "23", "24"))
    assert full.shape == (1, 4, 8, 8)
    assert (full - split).abs().max().item() < 1e-4  # euler split at step 2 == one 4-step pass
    assert half.std().item() > full.std().item()  # leftover noise is returned, not removed
    previews = [pixels_of(world, run, f"5{index}")[0] for index in range(len(pairs))]
    assert len(set(previews)) == len(pairs)
    assert all(world.file_of(run.outputs[f"5{i}"]["images"][0]).parent == world.engine.env.paths.temp_dir
               for i in range(len(pairs)))


def test_save_latent_then_load_latent(world: MicroWorld) -> None:
    graph = base_graph(seed=21)
    graph["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "e2e/latents/keep"}}
    saved_run = ok(world.engine.run(graph))
    saved = world.file_of(saved_run.outputs["9"]["latents"][0])
    assert saved.suffix == ".latent"
    shutil.copy(saved, world.input_dir / "e2e" / "kept.latent")

    reload = {
        "1": {"class_type": "LoadLatent", "inputs": {"latent": "e2e/kept.latent"}},
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "e2e/latents/again"}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": MICRO_NAME}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["4", 2]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    run = ok(world.engine.run(reload))
    assert (latent_of(world, run, "2") == latent_of(world, saved_run, "9")).all()
    assert read_png(image_files(world, run, "5")[0])[0] == (64, 64)


# --- image nodes: files, scaling, inversion, batches, masks, standalone VAE --------------------------------


def test_image_to_image_from_files_with_masks_and_a_vae_file(world: MicroWorld) -> None:
    graph = base_graph(seed=5, steps=3, output="SaveImage")
    graph["9"]["inputs"]["filename_prefix"] = "e2e/img2img"
    del graph["5"]
    graph.update({
        "20": {"class_type": "LoadImage", "inputs": {"image": SOURCE}},
        "21": {"class_type": "LoadImageMask", "inputs": {"image": SOURCE, "channel": "alpha"}},
        "22": {"class_type": "ImageScale", "inputs": {"image": ["20", 0], "upscale_method": "bilinear", "width": 64,
                                                      "height": 64, "crop": "center"}},
        "23": {"class_type": "ImageScaleBy", "inputs": {"image": ["22", 0], "upscale_method": "nearest-exact",
                                                        "scale_by": 0.5}},
        "24": {"class_type": "ImageInvert", "inputs": {"image": ["23", 0]}},
        "25": {"class_type": "ImageBatch", "inputs": {"image1": ["22", 0], "image2": ["24", 0]}},
        "26": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "27": {"class_type": "VAEEncode", "inputs": {"pixels": ["25", 0], "vae": ["26", 0]}},
        "28": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["27", 0], "upscale_method": "bilinear",
                                                           "scale_by": 2.0}},
        "29": {"class_type": "LatentUpscale", "inputs": {"samples": ["28", 0], "upscale_method": "nearest-exact",
                                                         "width": 64, "height": 64, "crop": "disabled"}},
        "30": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["29", 0], "mask": ["21", 0]}},
        "31": {"class_type": "SaveLatent", "inputs": {"samples": ["28", 0], "filename_prefix": "e2e/latents/up"}},
        "32": {"class_type": "PreviewImage", "inputs": {"images": ["23", 0]}},
        "33": {"class_type": "PreviewImage", "inputs": {"images": ["24", 0]}},
        "34": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "35": {"class_type": "PreviewImage", "inputs": {"images": ["34", 0]}},
    })
    graph["3"]["inputs"].update(latent_image=["30", 0], denoise=0.6)
    graph["8"]["inputs"]["vae"] = ["26", 0]
    run = ok(world.engine.run(graph))

    outputs = [read_png(path) for path in image_files(world, run, "9")]
    assert [size for size, _, _ in outputs] == [(64, 64), (64, 64)]  # ImageBatch fitted the 32² image to 64²
    assert outputs[0][1] != outputs[1][1]
    # the VAE file (decoder bias +0.4) decodes the same latents visibly brighter than the checkpoint's VAE
    own_vae = [read_png(path)[1] for path in image_files(world, run, "35")]
    for (_, loaded, _), builtin in zip(outputs, own_vae, strict=True):
        assert sum(loaded) / len(loaded) - sum(builtin) / len(builtin) > 10
    assert latent_of(world, run, "31").shape == (2, 4, 16, 16)  # 64² → 8² latent, ×2 → 16²
    (small_size, small, _), (inverted_size, inverted, _) = (read_png(image_files(world, run, n)[0]) for n in ("32", "33"))
    assert small_size == inverted_size == (32, 32)
    # 1 − x, then SaveImage's truncating 8-bit quantisation (as ComfyUI): the two sum to 254 or 255
    assert {a + b for a, b in zip(small, inverted, strict=True)} <= {254, 255}
    assert len(set(small)) > 10  # a real gradient, not a flat image


def test_changed_input_file_is_loaded_again(world: MicroWorld) -> None:
    """Cache keys follow file content: re-uploading an image under the same name re-runs LoadImage."""
    target = world.input_dir / "e2e" / "changing.png"
    target.write_bytes(gradient_png(24, 16))
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "e2e/changing.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    first = ok(world.engine.run(graph))
    assert set(ok(world.engine.run(graph)).cached) == {"1", "2", "3"}
    target.write_bytes(gradient_png(16, 24))
    changed = ok(world.engine.run(graph))
    assert {"1", "2", "3"} <= set(changed.executed)
    assert read_png(image_files(world, changed, "3")[0])[0] == (16, 24) != read_png(image_files(world, first, "3")[0])[0]


def test_inpaint_from_base64_hands_the_result_back_over_the_websocket_path(world: MicroWorld) -> None:
    from PIL import Image, ImageDraw

    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    graph = base_graph(seed=8, steps=2, output="SaveImageWebsocket")
    del graph["5"]
    graph.update({
        "40": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": b64(gradient_png(64, 64))}},
        "41": {"class_type": "ETN_LoadMaskBase64", "inputs": {"mask": "data:image/png;base64," + b64(buffer.getvalue())}},
        "42": {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["40", 0], "vae": ["4", 2], "mask": ["41", 0],
                                                               "grow_mask_by": 6}},
    })
    graph["3"]["inputs"]["latent_image"] = ["42", 0]
    graph["46"] = {"class_type": "ETN_SendImageWebSocket", "inputs": {"images": ["8", 0], "format": "JPEG"}}
    before = sorted(p for p in world.output_dir.rglob("*") if p.is_file())
    for attempt in ("first", "re-run"):
        sink = ListSink()
        run = ok(world.engine.run(graph, sink=sink))
        results = {(e.node, e.image_format, e.image.size) for e in sink.of_type(PreviewImageEvent) if e.is_result}
        assert results == {("9", "PNG", (64, 64)), ("46", "JPEG", (64, 64))}, attempt
        assert not run.outputs.get("9", {}).get("images")
        assert run.outputs["46"]["images"] == [{"source": "websocket", "content-type": "image/jpeg", "type": "output"}]
    assert "3" in run.cached  # the re-run sampled nothing, yet the result was sent again
    assert sorted(p for p in world.output_dir.rglob("*") if p.is_file()) == before  # nothing written


# --- bad input: clear errors, and the next prompt succeeds -------------------------------------------------


def test_missing_checkpoint_is_a_validation_error_listing_what_is_available(world: MicroWorld) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        world.engine.validate(base_graph("no-such-model.safetensors"))
    errors = caught.value.body["node_errors"]["4"]
    assert errors["class_type"] == "CheckpointLoaderSimple"
    assert errors["errors"][0]["type"] == "value_not_in_list"
    assert MICRO_NAME in errors["errors"][0]["details"] and "no-such-model.safetensors" in errors["errors"][0]["details"]


def _broken_checkpoints(world: MicroWorld) -> dict[str, tuple[bytes, str]]:
    data = world.checkpoint.read_bytes()
    vae_only = world.models_dir / "vae" / VAE
    return {
        "e2e-truncated.safetensors": (data[: len(data) // 2], "truncated"),
        "e2e-garbage.safetensors": (b"\x07" * 4096, "not a safetensors file"),
        "e2e-bad-header.safetensors": (data[:8] + b"{not json" + data[17:], "corrupt safetensors header"),
        "e2e-vae-only.safetensors": (vae_only.read_bytes(), "no Stable Diffusion UNet"),  # wrong architecture
    }


def test_corrupt_or_wrong_checkpoints_fail_clearly_and_the_next_prompt_succeeds(world: MicroWorld) -> None:
    for name, (payload, cause) in _broken_checkpoints(world).items():
        world.model_file("checkpoints", name).write_bytes(payload)
        run = world.engine.run(base_graph(name))
        assert run.status == "error", name
        assert (run.error.node_id, run.error.node_type) == ("4", "CheckpointLoaderSimple")
        assert name in run.error.exception_message and cause in run.error.exception_message
        assert ok(world.engine.run(base_graph(seed=len(name))))


@pytest.mark.slow
@pytest.mark.parametrize("mixed", ["sd1-model-sdxl-text", "sdxl-model-sd1-text"])
def test_conditioning_from_another_model_family_is_a_clear_error(world: MicroWorld, mixed: str) -> None:
    """A prompt encoded by one family's CLIP fed to the other family's UNet: the sampler names the
    mismatch instead of failing inside a matrix multiply."""
    graph = base_graph()
    graph["40"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": world.micro_sdxl()}}
    if mixed == "sd1-model-sdxl-text":
        graph["6"]["inputs"]["clip"] = graph["7"]["inputs"]["clip"] = ["40", 1]
    else:
        graph["3"]["inputs"]["model"] = ["40", 0]
    run = world.engine.run(graph)
    assert run.status == "error" and run.error.node_type == "KSampler"
    message = run.error.exception_message
    assert "mat1 and mat2" not in message and "conditioning" in message and "CLIP" in message
    ok(world.engine.run(base_graph(seed=77)))


@pytest.mark.parametrize(
    ("payload", "cause"),
    [
        ("@@@ this is not base64 @@@", "base64"),
        (b64(b"plain text, no image here"), "not an image"),
        (b64(huge_png_header_only(9000, 9000)), "pixel"),
    ],
    ids=["invalid-base64", "not-an-image", "over-pixel-cap"],
)
def test_bad_base64_images_fail_clearly_and_the_next_prompt_succeeds(world: MicroWorld, payload: str, cause: str) -> None:
    graph = {
        "1": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": payload}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    run = world.engine.run(graph)
    assert run.status == "error"
    assert (run.error.node_id, run.error.node_type) == ("1", "ETN_LoadImageBase64")
    assert cause in run.error.exception_message.lower()
    graph["1"]["inputs"]["image"] = b64(gradient_png(16, 16))
    ok(world.engine.run(graph))


def test_bad_base64_mask_fails_clearly(world: MicroWorld) -> None:
    graph = {
        "1": {"class_type": "ETN_LoadMaskBase64", "inputs": {"mask": "%%%"}},
        "2": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": b64(gradient_png(16, 16))}},
        "3": {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["2", 0], "vae": ["4", 2], "mask": ["1", 0],
                                                              "grow_mask_by": 0}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": MICRO_NAME}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "e2e/latents/bad"}},
    }
    run = world.engine.run(graph)
    assert run.status == "error" and run.error.node_type == "ETN_LoadMaskBase64"
    assert "base64" in run.error.exception_message.lower()


@pytest.mark.parametrize(
    ("node", "patch"),
    [("5", {"width": 100}), ("5", {"height": 60})],
    ids=["width-100", "height-60"],
)
def test_dimensions_not_divisible_by_8_are_refused_naming_the_node(world: MicroWorld, node: str, patch: dict) -> None:
    graph = base_graph()
    graph[node]["inputs"].update(patch)
    with pytest.raises(WorkflowInvalid) as caught:
        world.engine.validate(graph)
    errors = caught.value.body["node_errors"][node]
    assert errors["class_type"] == "EmptyLatentImage"
    assert "multiple of 8" in errors["errors"][0]["details"]
