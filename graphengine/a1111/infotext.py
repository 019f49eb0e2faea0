"""A1111's generation parameters text ("infotext") and the ``info`` JSON of a generation response.

Infotext is three parts: the prompt, an optional ``Negative prompt: …`` line, and a last line of
``Key: value`` pairs separated by ", " (values containing commas are JSON-quoted). ``png-info`` parses
it back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from graphengine.a1111.plan import GenerationPlan

VERSION = "graphengine"
_PAIR = re.compile(r'\s*([\w ()/+-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _quote(value: Any) -> str:
    text = str(value)
    if "," in text or "\n" in text or ":" in text or '"' in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def format_infotext(prompt: str, negative: str, params: Mapping[str, Any]) -> str:
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in params.items() if value is not None)
    parts = [prompt]
    if negative:
        parts.append(f"Negative prompt: {negative}")
    parts.append(line)
    return "\n".join(parts)


def parse_infotext(text: str) -> dict[str, Any]:
    """``{"Prompt", "Negative prompt", key: value…}`` from an infotext (values as strings)."""
    lines = text.strip().split("\n")
    params: dict[str, Any] = {}
    last = lines[-1] if lines else ""
    pairs = _PAIR.findall(last) if last else []
    if len(pairs) >= 3:  # a real parameter line ("Steps: 20, Sampler: …, Seed: …")
        lines = lines[:-1]
        for key, value in pairs:
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key.strip()] = value
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    return {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines), **params}


def image_params(plan: GenerationPlan, seed: int, subseed: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "Steps": plan.first.steps,
        "Sampler": plan.first.choice.sampler.name,
        "Schedule type": plan.first.choice.scheduler.label,
        "CFG scale": plan.first.cfg,
        "Seed": seed,
        "Size": f"{plan.width}x{plan.height}",
        "Model hash": plan.checkpoint.short_hash,
        "Model": plan.checkpoint.model_name,
        "VAE": plan.vae,
        "Denoising strength": plan.denoising_strength,
        "Clip skip": plan.clip_skip if plan.clip_skip > 1 else None,
    }
    if plan.loras:
        params["Lora"] = ", ".join(f"{t.name}:{t.model_weight:g}" for t in plan.loras)
    if plan.hires is not None:
        params["Hires resize"] = f"{plan.hires.width}x{plan.hires.height}"
        params["Hires steps"] = plan.hires.second.steps
        params["Hires upscaler"] = plan.hires.upscaler.name
        if plan.hires.second.choice != plan.first.choice:
            params["Hires sampler"] = plan.hires.second.choice.sampler.name
    params["Version"] = VERSION
    return params


def info_json(plan: GenerationPlan, seeds: Sequence[int], subseeds: Sequence[int], *, job_timestamp: float | None = None) -> str:
    """The ``info`` string of a response: A1111's JSON for the images actually returned."""
    infotexts = [
        format_infotext(plan.prompt, plan.negative_prompt, image_params(plan, seed, subseed))
        for seed, subseed in zip(seeds, subseeds)
    ]
    count = len(seeds)
    body = {
        "prompt": plan.prompt,
        "all_prompts": [plan.prompt] * count,
        "negative_prompt": plan.negative_prompt,
        "all_negative_prompts": [plan.negative_prompt] * count,
        "seed": seeds[0] if seeds else plan.seeds[0],
        "all_seeds": list(seeds),
        "subseed": subseeds[0] if subseeds else plan.subseeds[0],
        "all_subseeds": list(subseeds),
        "subseed_strength": 0.0,
        "width": plan.width,
        "height": plan.height,
        "sampler_name": plan.first.choice.sampler.name,
        "scheduler": plan.first.choice.scheduler.label,
        "cfg_scale": plan.first.cfg,
        "steps": plan.first.steps,
        "batch_size": plan.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": plan.checkpoint.model_name,
        "sd_model_hash": plan.checkpoint.short_hash,
        "sd_vae_name": plan.vae,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": plan.denoising_strength,
        "extra_generation_params": {"Schedule type": plan.first.choice.scheduler.label},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job_timestamp)),
        "clip_skip": plan.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }
    return json.dumps(body, ensure_ascii=False)
