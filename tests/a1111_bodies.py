"""The request bodies real A1111 / SD.Next clients send (reference: clients.md §2.3–2.4, §3.2–3.3, §4, §5).

Each function returns the body exactly as that client builds it, quirks included (SillyTavern's
leaked ``url``/``auth``, webuiapi's nulls and legacy keys, sd-proxy's always-present defaults), with
sizes and steps small enough for the micro test model.
"""

from __future__ import annotations

import base64
import io
from typing import Any


def png_b64(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 40, 40), mode: str = "RGB") -> str:
    from PIL import Image

    image = Image.new(mode, (width, height), color if mode == "RGB" else (*color, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def sillytavern_auto(*, seed: int | None = None, steps: int = 2, size: int = 64, vae: str | None = None) -> dict[str, Any]:
    """SillyTavern ``generateAutoImage`` (source auto). ``url``/``auth`` are ST's own fields."""
    override: dict[str, Any] = {"CLIP_stop_at_last_layers": 1}
    if vae:
        override["sd_vae"] = vae
        override["forge_additional_modules"] = [vae]
    body: dict[str, Any] = {
        "url": "http://127.0.0.1:7860",
        "auth": "stuser:st-secret-password",
        "prompt": "best quality, a red fox in the snow",
        "negative_prompt": "lowres, bad anatomy",
        "sampler_name": "DPM++ 2M",
        "scheduler": "karras",
        "steps": steps,
        "cfg_scale": 7,
        "width": size,
        "height": size,
        "restore_faces": False,
        "enable_hr": False,
        "hr_upscaler": "Latent",
        "hr_scale": 1.0,
        "hr_additional_modules": [],
        "denoising_strength": 0.7,
        "hr_second_pass_steps": 0,
        "override_settings": override,
        "override_settings_restore_afterwards": True,
        "clip_skip": 1,
        "save_images": True,
        "send_images": True,
        "do_not_save_grid": False,
        "do_not_save_samples": False,
    }
    if seed is not None and seed >= 0:
        body["seed"] = seed
    return body


def sillytavern_vlad(**kwargs: Any) -> dict[str, Any]:
    """SillyTavern source vlad (SD.Next): same payload, scheduler = last stored value ("normal"), no sd_vae."""
    body = sillytavern_auto(**kwargs)
    body["scheduler"] = "normal"
    body["url"] = "http://127.0.0.1:7860"
    return body


def talemate_a1111(*, scheduler: str = "Karras", steps: int = 2, size: int = 64) -> dict[str, Any]:
    """Talemate automatic1111.py: no seed, no model, label schedulers (even its typo)."""
    return {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "",
        "steps": steps,
        "width": size,
        "height": size,
        "cfg_scale": 7,
        "sampler_name": "DPM++ 2M",
        "scheduler": scheduler,
    }


def talemate_sdnext_txt2img(*, model: str | None = None, steps: int = 2, size: int = 64) -> dict[str, Any]:
    """Talemate sdnext.py txt2img: send_images and a top-level sd_model_checkpoint."""
    body: dict[str, Any] = {
        "prompt": "a castle on a hill",
        "negative_prompt": "blurry",
        "steps": steps,
        "width": size,
        "height": size,
        "cfg_scale": 7,
        "sampler_name": "Euler a",
        "send_images": True,
    }
    if model:
        body["sd_model_checkpoint"] = model
    return body


def talemate_sdnext_img2img(*, image: str, model: str | None = None, steps: int = 2, size: int = 64) -> dict[str, Any]:
    """Talemate sdnext.py image edit: one raw-base64 reference, no denoising_strength."""
    body = talemate_sdnext_txt2img(model=model, steps=steps, size=size)
    body["init_images"] = [image]
    return body


def webuiapi_txt2img(*, steps: int = 2, size: int = 64, batch_size: int = 1, n_iter: int = 1, seed: int = -1) -> dict[str, Any]:
    """webuiapi 0.9.17 ``WebUIApi.txt2img`` with its defaults: every key, nulls included."""
    return {
        "enable_hr": False,
        "hr_scale": 2,
        "hr_upscaler": "Latent",
        "hr_second_pass_steps": 0,
        "hr_resize_x": 0,
        "hr_resize_y": 0,
        "hr_checkpoint_name": None,
        "hr_sampler_name": None,
        "hr_scheduler": None,
        "hr_prompt": "",
        "hr_negative_prompt": "",
        "denoising_strength": 0.7,
        "firstphase_width": 0,
        "firstphase_height": 0,
        "prompt": "a watercolor of a sailing ship",
        "styles": [],
        "seed": seed,
        "subseed": -1,
        "subseed_strength": 0.0,
        "seed_resize_from_h": 0,
        "seed_resize_from_w": 0,
        "batch_size": batch_size,
        "n_iter": n_iter,
        "steps": steps,
        "cfg_scale": 7.0,
        "width": size,
        "height": size,
        "restore_faces": False,
        "tiling": False,
        "do_not_save_samples": False,
        "do_not_save_grid": False,
        "negative_prompt": "",
        "eta": 1.0,
        "s_churn": 0,
        "s_tmax": 0,
        "s_tmin": 0,
        "s_noise": 1,
        "override_settings": {},
        "override_settings_restore_afterwards": True,
        "sampler_name": "Euler a",
        "scheduler": "automatic",
        "sampler_index": "Euler a",
        "script_name": None,
        "script_args": [],
        "send_images": True,
        "save_images": False,
        "alwayson_scripts": {},
    }


def webuiapi_img2img(*, image_b64: str, mask_b64: str | None = None, steps: int = 2, size: int = 64) -> dict[str, Any]:
    """webuiapi ``img2img``: data-URL init images and mask, inpainting keys."""
    body = webuiapi_txt2img(steps=steps, size=size)
    for key in ("enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y",
                "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt",
                "firstphase_width", "firstphase_height"):
        body.pop(key)
    body.update(
        {
            "init_images": [f"data:image/png;base64,{image_b64}"],
            "resize_mode": 0,
            "denoising_strength": 0.75,
            "image_cfg_scale": 1.5,
            "mask": f"data:image/png;base64,{mask_b64}" if mask_b64 else None,
            "mask_blur": 4,
            "inpainting_fill": 1,
            "inpaint_full_res": True,
            "inpaint_full_res_padding": 0,
            "inpainting_mask_invert": 0,
            "initial_noise_multiplier": 1,
            "include_init_images": False,
        }
    )
    return body


def sd_proxy_forwarded(*, prompt: str = "a robot reading a book", steps: int = 2, size: int = 64,
                       model: str = "", controlnet_args: list[Any] | None = None) -> dict[str, Any]:
    """What sd-proxy-server forwards to ``<registered>/sdapi/v1/txt2img`` (no Content-Type, no auth)."""
    return {
        "prompt": prompt,
        "negative_prompt": "",
        "seed": -1,
        "subseed": -1,
        "subseed_strength": 0.0,
        "seed_resize_from_h": -1,
        "seed_resize_from_w": -1,
        "scheduler": "discrete",
        "batch_size": 1,
        "n_iter": 1,
        "steps": steps,
        "cfg_scale": 7.0,
        "width": size,
        "height": size,
        "restore_faces": False,
        "tiling": False,
        "do_not_save_samples": False,
        "do_not_save_grid": False,
        "s_min_uncond": None,
        "override_settings": {"sd_model_checkpoint": model},
        "override_settings_restore_afterwards": True,
        "enable_hr": False,
        "firstphase_width": 0,
        "firstphase_height": 0,
        "hr_scale": 2.0,
        "hr_second_pass_steps": 0,
        "hr_resize_x": 0,
        "hr_resize_y": 0,
        "hr_prompt": "",
        "hr_negative_prompt": "",
        "sampler_index": "Euler",
        "send_images": True,
        "save_images": False,
        "alwayson_scripts": {"controlnet": {"args": controlnet_args or []}},
    }
