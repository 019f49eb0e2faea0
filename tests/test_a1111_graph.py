"""A1111 request bodies → checked plans → ComfyUI API graphs (no server, no torch)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from graphengine.a1111.catalog import HashCache, ModelCatalog
from graphengine.a1111.graph import build_iteration
from graphengine.a1111.names import NameResolver
from graphengine.a1111.options import OptionsStore
from graphengine.a1111.plan import GenerationPlan, PlanContext, RequestRejected, plan_generation, script_is_inactive
from graphengine.a1111.requests import Img2ImgRequest, Txt2ImgRequest
from graphengine.environment import Limits
from graphengine.models.library import ModelLibrary
from tests import a1111_bodies as bodies


@pytest.fixture
def ctx(tmp_path: Path) -> PlanContext:
    models = tmp_path / "models"
    for kind, name in (
        ("checkpoints", "micro.safetensors"),
        ("checkpoints", "sub/other_model.safetensors"),
        ("loras", "style.safetensors"),
        ("vae", "better_vae.safetensors"),
    ):
        path = models / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights of " + name.encode())
    return PlanContext(
        resolver=NameResolver(),
        catalog=ModelCatalog(ModelLibrary(models), HashCache(tmp_path / "hashes.json")),
        options=OptionsStore(tmp_path / "data"),
        limits=Limits(max_image_pixels=1024 * 1024),
        rng=random.Random(7),
    )


def plan(ctx: PlanContext, body: dict[str, Any], model: type[Txt2ImgRequest] = Txt2ImgRequest) -> GenerationPlan:
    return plan_generation(model.model_validate(body), ctx)


def nodes_of(graph: dict[str, Any], class_type: str) -> list[dict[str, Any]]:
    return [n for n in graph.values() if n["class_type"] == class_type]


def follow(graph: dict[str, Any], link: list[Any]) -> dict[str, Any]:
    return graph[link[0]]


def test_sillytavern_body_becomes_a_txt2img_graph(ctx: PlanContext) -> None:
    p = plan(ctx, bodies.sillytavern_auto(seed=1234))
    graph = build_iteration(p, 0)
    g = graph.prompt
    (loader,) = nodes_of(g, "CheckpointLoaderSimple")
    assert loader["inputs"]["ckpt_name"] == "micro.safetensors"  # first checkpoint: nothing configured
    (sampler,) = nodes_of(g, "KSampler")
    assert sampler["inputs"] | {} == sampler["inputs"]
    assert {k: sampler["inputs"][k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")} == {
        "seed": 1234, "steps": 2, "cfg": 7.0, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0,
    }  # fmt: skip
    assert follow(g, sampler["inputs"]["positive"])["inputs"]["text"] == "best quality, a red fox in the snow"
    assert follow(g, sampler["inputs"]["negative"])["inputs"]["text"] == "lowres, bad anatomy"
    latent = follow(g, sampler["inputs"]["latent_image"])
    assert latent == {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}, "_meta": latent["_meta"]}
    (save,) = nodes_of(g, "SaveImage")  # ST asks for save_images
    assert graph.outputs == (next(k for k, v in g.items() if v is save),)
    assert graph.seeds == (1234,)
    assert not nodes_of(g, "CLIPSetLastLayer")  # clip skip 1 = no change
    text = repr(g)
    assert "st-secret-password" not in text and "7860" not in text


def test_seeds_batch_and_iterations(ctx: PlanContext) -> None:
    p = plan(ctx, bodies.webuiapi_txt2img(batch_size=3, n_iter=2, seed=-1))
    assert len(p.seeds) == 6 and p.seeds == tuple(range(p.seeds[0], p.seeds[0] + 6))
    assert 0 <= p.seeds[0] < 2**32
    second = build_iteration(p, 1)
    samplers = nodes_of(second.prompt, "KSampler")
    assert [s["inputs"]["seed"] for s in samplers] == list(p.seeds[3:])
    assert second.seeds == p.seeds[3:]
    assert len(second.outputs) == 3 and len(nodes_of(second.prompt, "PreviewImage")) == 3
    assert len(nodes_of(second.prompt, "CheckpointLoaderSimple")) == 1  # shared by the batch
    again = plan(ctx, bodies.webuiapi_txt2img(seed=42))
    assert again.seeds == (42,)


def test_random_seeds_differ_between_requests(ctx: PlanContext) -> None:
    seeds = {plan(ctx, bodies.talemate_a1111()).seeds[0] for _ in range(5)}
    assert len(seeds) == 5


def test_hires_fix_latent_and_image_upscalers(ctx: PlanContext) -> None:
    body = bodies.webuiapi_txt2img(seed=5) | {"enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 3, "denoising_strength": 0.5}
    g = build_iteration(plan(ctx, body), 0).prompt
    first, second = nodes_of(g, "KSampler")
    (upscale,) = nodes_of(g, "LatentUpscale")
    assert upscale["inputs"]["width"] == 96 and upscale["inputs"]["height"] == 96
    assert upscale["inputs"]["upscale_method"] == "bilinear"
    assert follow(g, second["inputs"]["latent_image"]) is upscale
    assert second["inputs"]["steps"] == 3 and second["inputs"]["denoise"] == 0.5 and second["inputs"]["seed"] == 5
    assert first["inputs"]["denoise"] == 1.0

    body |= {"hr_upscaler": "Lanczos", "hr_resize_x": 128, "hr_resize_y": 96, "hr_sampler_name": "Euler", "hr_prompt": "sharp"}
    g = build_iteration(plan(ctx, body), 0).prompt
    (scale,) = nodes_of(g, "ImageScale")
    assert scale["inputs"] | {"image": None} == {
        "image": None, "upscale_method": "lanczos", "width": 128, "height": 96, "crop": "center",
    }  # fmt: skip
    second = nodes_of(g, "KSampler")[1]
    assert second["inputs"]["sampler_name"] == "euler"
    assert follow(g, second["inputs"]["positive"])["inputs"]["text"] == "sharp"


def test_hires_fix_with_an_unknown_upscaler_names_the_field(ctx: PlanContext) -> None:
    body = bodies.webuiapi_txt2img() | {"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}
    with pytest.raises(RequestRejected) as info:
        plan(ctx, body)
    assert info.value.field == "hr_upscaler" and "R-ESRGAN 4x+" in info.value.message


def test_loras_clip_skip_vae_and_model_from_override_settings(ctx: PlanContext) -> None:
    body = bodies.sillytavern_auto(vae="better_vae.safetensors") | {
        "prompt": "a fox <lora:style:0.6>, snow <lora:style:0.5:0.25>",
    }
    body["override_settings"] |= {"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": "other_model [0123456789]"}
    p = plan(ctx, body)
    g = build_iteration(p, 0).prompt
    assert nodes_of(g, "CheckpointLoaderSimple")[0]["inputs"]["ckpt_name"] == "sub/other_model.safetensors"
    assert nodes_of(g, "VAELoader")[0]["inputs"]["vae_name"] == "better_vae.safetensors"
    loras = nodes_of(g, "LoraLoader")
    assert [(n["inputs"]["strength_model"], n["inputs"]["strength_clip"]) for n in loras] == [(0.6, 0.6), (0.25, 0.5)]
    (skip,) = nodes_of(g, "CLIPSetLastLayer")
    assert skip["inputs"]["stop_at_clip_layer"] == -2
    positive = follow(g, nodes_of(g, "KSampler")[0]["inputs"]["positive"])
    assert positive["inputs"]["text"] == "a fox, snow"
    decode = nodes_of(g, "VAEDecode")[0]
    assert g[decode["inputs"]["vae"][0]]["class_type"] == "VAELoader"
    # the override is for this request only
    assert ctx.options.current.CLIP_stop_at_last_layers == 1


def test_top_level_checkpoint_and_empty_means_current(ctx: PlanContext) -> None:
    p = plan(ctx, bodies.talemate_sdnext_txt2img(model="other_model.safetensors"))
    assert p.checkpoint.name == "sub/other_model.safetensors"
    ctx.options.update({"sd_model_checkpoint": "sub/other_model.safetensors"})
    assert plan(ctx, bodies.sd_proxy_forwarded(model="")).checkpoint.name == "sub/other_model.safetensors"


def test_unknown_models_and_loras_are_named(ctx: PlanContext) -> None:
    cases = [
        (bodies.talemate_sdnext_txt2img(model="missing.safetensors"), "sd_model_checkpoint"),
        (bodies.sd_proxy_forwarded(model="missing"), "override_settings.sd_model_checkpoint"),
        (bodies.sillytavern_auto(vae="missing_vae.pt"), "override_settings.sd_vae"),
        (bodies.talemate_a1111() | {"prompt": "x <lora:nope:1>"}, "prompt"),
        (bodies.talemate_a1111() | {"prompt": "x <lora:style:heavy>"}, "prompt"),
    ]
    for body, field in cases:
        with pytest.raises(RequestRejected) as info:
            plan(ctx, body)
        assert info.value.field == field, body


def test_disable_extra_networks_strips_without_loading(ctx: PlanContext) -> None:
    body = bodies.talemate_a1111() | {"prompt": "x <lora:nope:1>", "disable_extra_networks": True}
    g = build_iteration(plan(ctx, body), 0).prompt
    assert not nodes_of(g, "LoraLoader")


def test_always_on_scripts(ctx: PlanContext) -> None:
    assert script_is_inactive({})
    assert script_is_inactive({"args": []})
    assert script_is_inactive({"args": [{"enabled": False, "image": "..."}]})
    assert script_is_inactive({"args": [False, True, {"ad_model": "face_yolov8n.pt"}]})
    assert not script_is_inactive({"args": [True, True, {"ad_model": "face_yolov8n.pt"}]})
    assert not script_is_inactive({"args": [{"enabled": True, "module": "reference_only"}]})
    plan(ctx, bodies.sd_proxy_forwarded())  # empty controlnet args: accepted
    plan(ctx, bodies.sd_proxy_forwarded(controlnet_args=[{"enabled": False, "image": "xx"}]))
    for name, value in (
        ("controlnet", {"args": [{"enabled": True, "pixel_perfect": True, "image": "xx", "module": "reference_only"}]}),
        ("ADetailer", {"args": [True, True, {"ad_model": "face_yolov8n.pt"}]}),
    ):
        with pytest.raises(RequestRejected) as info:
            plan(ctx, bodies.talemate_a1111() | {"alwayson_scripts": {name: value}})
        assert info.value.field == f"alwayson_scripts.{name}" and name in info.value.message
    with pytest.raises(RequestRejected, match="script_name"):
        plan(ctx, bodies.webuiapi_txt2img() | {"script_name": "x/y/z plot"})


def test_pixel_limits_and_unknown_sampler(ctx: PlanContext) -> None:
    with pytest.raises(RequestRejected) as info:
        plan(ctx, bodies.talemate_a1111() | {"width": 2048, "height": 2048})  # 4 MP > 1 MP test cap
    assert info.value.field == "width"
    with pytest.raises(RequestRejected) as info:
        plan(ctx, bodies.talemate_a1111() | {"enable_hr": True, "hr_scale": 8.0, "width": 512, "height": 512})
    assert info.value.field == "hr_scale"
    with pytest.raises(RequestRejected) as info:
        plan(ctx, bodies.talemate_a1111() | {"sampler_name": "Euler Z"})
    assert info.value.field == "sampler_name" and "Euler Z" in info.value.message
    with pytest.raises(RequestRejected) as info:
        plan(ctx, {"sampler_index": "nope"})
    assert info.value.field == "sampler_index"


def test_img2img_resize_modes_and_steps(ctx: PlanContext) -> None:
    source = bodies.png_b64(96, 64)
    body = bodies.webuiapi_img2img(image_b64=source) | {"steps": 10, "denoising_strength": 0.5}
    p = plan(ctx, body, Img2ImgRequest)
    g = build_iteration(p, 0).prompt
    (load,) = nodes_of(g, "ETN_LoadImageBase64")
    assert load["inputs"]["image"] == source  # the data: prefix is stripped
    (scale,) = nodes_of(g, "ImageScale")
    assert (scale["inputs"]["width"], scale["inputs"]["height"], scale["inputs"]["crop"]) == (64, 64, "disabled")
    (sampler,) = nodes_of(g, "KSampler")
    assert follow(g, sampler["inputs"]["latent_image"])["class_type"] == "VAEEncode"
    assert (sampler["inputs"]["steps"], sampler["inputs"]["denoise"]) == (5, 0.5)  # A1111: steps × denoise
    ctx.options.update({"img2img_fix_steps": True})
    assert plan(ctx, body, Img2ImgRequest).first.steps == 10

    crop = build_iteration(plan(ctx, body | {"resize_mode": 1}, Img2ImgRequest), 0).prompt
    assert nodes_of(crop, "ImageScale")[0]["inputs"]["crop"] == "center"
    fill = build_iteration(plan(ctx, body | {"resize_mode": 2}, Img2ImgRequest), 0).prompt
    assert not nodes_of(fill, "ImageScale")  # filled to 64×64 before queueing
    assert nodes_of(fill, "ETN_LoadImageBase64")[0]["inputs"]["image"] != source
    latent = build_iteration(plan(ctx, body | {"resize_mode": 3}, Img2ImgRequest), 0).prompt
    assert nodes_of(latent, "LatentUpscale")[0]["inputs"]["width"] == 64
    same_size = bodies.talemate_sdnext_img2img(image=bodies.png_b64(64, 64))
    assert not nodes_of(build_iteration(plan(ctx, same_size, Img2ImgRequest), 0).prompt, "ImageScale")


def test_inpainting_fill_modes(ctx: PlanContext) -> None:
    body = bodies.webuiapi_img2img(image_b64=bodies.png_b64(), mask_b64=bodies.png_b64(color=(255, 255, 255)))
    original = build_iteration(plan(ctx, body, Img2ImgRequest), 0).prompt
    (noise_mask,) = nodes_of(original, "SetLatentNoiseMask")
    assert follow(original, noise_mask["inputs"]["mask"])["class_type"] == "ETN_LoadMaskBase64"
    filled = build_iteration(plan(ctx, body | {"inpainting_fill": 0}, Img2ImgRequest), 0).prompt
    assert nodes_of(filled, "VAEEncodeForInpaint") and not nodes_of(filled, "SetLatentNoiseMask")


@pytest.mark.parametrize(
    ("field", "value", "expected_field"),
    [
        ("init_images", ["not base64!!"], "init_images.0"),
        ("init_images", ["aGVsbG8gd29ybGQ="], "init_images.0"),  # valid base64, not an image
        ("mask", "%%%", "mask"),
    ],
)
def test_bad_images_name_the_field(ctx: PlanContext, field: str, value: Any, expected_field: str) -> None:
    body = bodies.webuiapi_img2img(image_b64=bodies.png_b64()) | {field: value}
    with pytest.raises(RequestRejected) as info:
        plan(ctx, body, Img2ImgRequest)
    assert info.value.field == expected_field


def test_image_over_the_pixel_cap(ctx: PlanContext) -> None:
    body = bodies.talemate_sdnext_img2img(image=bodies.png_b64(1100, 1000))
    with pytest.raises(RequestRejected) as info:
        plan(ctx, body, Img2ImgRequest)
    assert info.value.field == "init_images.0" and "limit" in info.value.message
