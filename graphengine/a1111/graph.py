"""A ``GenerationPlan`` as ComfyUI API-format workflow graphs, one per iteration (``n_iter``).

Each image of a batch gets its own sampler branch seeded ``seed + i`` (shared loader, LoRAs, text
encodings and source images), so every image can be reproduced alone from the seed reported for it,
as A1111 reports seeds. The graph uses the same node classes as ``/prompt`` clients:

    CheckpointLoaderSimple → [VAELoader] → LoraLoader… → [CLIPSetLastLayer] → CLIPTextEncode ×2
    txt2img: EmptyLatentImage ─┐
    img2img: ETN_LoadImageBase64 → [ImageScale] → VAEEncode | VAEEncodeForInpaint / SetLatentNoiseMask
                               └→ KSampler(seed+i) → [hires: LatentUpscale | VAEDecode→ImageScale→VAEEncode
                                  → KSampler] → VAEDecode → SaveImage | PreviewImage
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphengine.a1111.plan import GenerationPlan, HiresFix, SamplingPass

Link = list[Any]  # [node_id, output_index]

FILENAME_PREFIX = {"txt2img": "sdapi_txt2img", "img2img": "sdapi_img2img"}


@dataclass(frozen=True)
class IterationGraph:
    """One queued prompt: the graph, its image outputs in order, their seeds, and sampler steps."""

    prompt: dict[str, dict[str, Any]]
    outputs: tuple[str, ...]
    seeds: tuple[int, ...]
    samplers: tuple[tuple[str, int], ...]  # (node id, steps) in the order they run

    @property
    def total_steps(self) -> int:
        return sum(steps for _, steps in self.samplers)


@dataclass
class _Builder:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, class_type: str, title: str, **inputs: Any) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
        return node_id


@dataclass(frozen=True)
class _Models:
    model: Link
    clip: Link
    vae: Link


def _load_models(b: _Builder, checkpoint: str, plan: GenerationPlan, *, loras: bool = True) -> _Models:
    loader = b.add("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=checkpoint)
    model, clip, vae = [loader, 0], [loader, 1], [loader, 2]
    if plan.vae:
        vae = [b.add("VAELoader", "Load VAE", vae_name=plan.vae), 0]
    if loras:
        for tag in plan.loras:
            lora = b.add(
                "LoraLoader",
                f"LoRA {tag.name}",
                model=model,
                clip=clip,
                lora_name=tag.name,
                strength_model=tag.model_weight,
                strength_clip=tag.clip_weight,
            )
            model, clip = [lora, 0], [lora, 1]
    if plan.clip_skip > 1:
        clip = [b.add("CLIPSetLastLayer", "Clip skip", clip=clip, stop_at_clip_layer=-plan.clip_skip), 0]
    return _Models(model, clip, vae)


def _encode(b: _Builder, models: _Models, sampling: SamplingPass, label: str) -> tuple[Link, Link]:
    positive = b.add("CLIPTextEncode", f"{label}Positive prompt", text=sampling.positive, clip=models.clip)
    negative = b.add("CLIPTextEncode", f"{label}Negative prompt", text=sampling.negative, clip=models.clip)
    return [positive, 0], [negative, 0]


def _sample(
    b: _Builder, models: _Models, conds: tuple[Link, Link], latent: Link, sampling: SamplingPass, seed: int, title: str
) -> str:
    return b.add(
        "KSampler",
        title,
        model=models.model,
        seed=seed,
        steps=sampling.steps,
        cfg=sampling.cfg,
        sampler_name=sampling.choice.comfy_sampler,
        scheduler=sampling.choice.comfy_scheduler,
        positive=conds[0],
        negative=conds[1],
        latent_image=latent,
        denoise=sampling.denoise,
    )


def _source_latents(b: _Builder, plan: GenerationPlan, models: _Models) -> list[Link]:
    """One latent link per distinct source (txt2img: the empty latent; img2img: each init image)."""
    if plan.init is None:
        return [[b.add("EmptyLatentImage", "Empty latent", width=plan.width, height=plan.height, batch_size=1), 0]]
    init = plan.init
    mask: Link | None = None
    if init.mask is not None:
        mask = [b.add("ETN_LoadMaskBase64", "Mask", mask=init.mask), 0]
    latents = []
    for index, (payload, needs_scale) in enumerate(zip(init.images, init.needs_scale)):
        pixels: Link = [b.add("ETN_LoadImageBase64", f"Init image {index}", image=payload), 0]
        latent_upscale = needs_scale and init.resize_mode == 3
        if needs_scale and not latent_upscale:
            crop = "center" if init.resize_mode == 1 else "disabled"
            pixels = [
                b.add(
                    "ImageScale",
                    f"Resize init image {index}",
                    image=pixels,
                    upscale_method="lanczos",
                    width=plan.width,
                    height=plan.height,
                    crop=crop,
                ),
                0,
            ]
        if mask is not None and init.inpainting_fill != 1 and not latent_upscale:
            encoded = b.add(
                "VAEEncodeForInpaint", f"Encode {index} (inpaint)", pixels=pixels, vae=models.vae, mask=mask, grow_mask_by=0
            )
            latents.append([encoded, 0])
            continue
        latent: Link = [b.add("VAEEncode", f"Encode init image {index}", pixels=pixels, vae=models.vae), 0]
        if latent_upscale:
            latent = [
                b.add(
                    "LatentUpscale",
                    f"Resize latent {index}",
                    samples=latent,
                    upscale_method="bilinear",
                    width=plan.width,
                    height=plan.height,
                    crop="disabled",
                ),
                0,
            ]
        if mask is not None:
            latent = [b.add("SetLatentNoiseMask", f"Mask latent {index}", samples=latent, mask=mask), 0]
        latents.append(latent)
    return latents


def build_iteration(plan: GenerationPlan, iteration: int, *, filename_prefix: str | None = None) -> IterationGraph:
    """The graph of iteration ``iteration`` (0-based) of ``plan``."""
    b = _Builder()
    models = _load_models(b, plan.checkpoint.name, plan)
    conds = _encode(b, models, plan.first, "")
    sources = _source_latents(b, plan, models)
    hires = plan.hires
    hr_models, hr_conds = models, conds
    if hires is not None:
        if hires.checkpoint is not None:
            hr_models = _load_models(b, hires.checkpoint.name, plan, loras=False)
        if hires.checkpoint is not None or hires.second.positive != plan.first.positive or hires.second.negative != plan.first.negative:
            hr_conds = _encode(b, hr_models, hires.second, "Hires ")
    seeds = plan.seeds[iteration * plan.batch_size : (iteration + 1) * plan.batch_size]
    outputs, samplers = [], []
    prefix = filename_prefix or FILENAME_PREFIX[plan.mode]
    for index, seed in enumerate(seeds):
        global_index = iteration * plan.batch_size + index
        source = sources[global_index % len(sources)]
        sampled = _sample(b, models, conds, source, plan.first, seed, f"Sample image {index}")
        samplers.append((sampled, plan.first.steps))
        latent: Link = [sampled, 0]
        vae = models.vae
        if hires is not None:
            latent = _upscale(b, hires, latent, models, index)
            second = _sample(b, hr_models, hr_conds, latent, hires.second, seed, f"Hires pass image {index}")
            samplers.append((second, hires.second.steps))
            latent, vae = [second, 0], hr_models.vae
        image = b.add("VAEDecode", f"Decode image {index}", samples=latent, vae=vae)
        if plan.save:
            out = b.add("SaveImage", f"Save image {index}", images=[image, 0], filename_prefix=prefix)
        else:
            out = b.add("PreviewImage", f"Image {index}", images=[image, 0])
        outputs.append(out)
    return IterationGraph(prompt=b.nodes, outputs=tuple(outputs), seeds=tuple(seeds), samplers=tuple(samplers))


def _upscale(b: _Builder, hires: HiresFix, latent: Link, models: _Models, index: int) -> Link:
    crop = "center" if hires.crop else "disabled"
    if hires.upscaler.latent:
        node = b.add(
            "LatentUpscale",
            f"Hires upscale {index}",
            samples=latent,
            upscale_method=hires.upscaler.method,
            width=hires.width,
            height=hires.height,
            crop=crop,
        )
        return [node, 0]
    decoded = b.add("VAEDecode", f"Hires decode {index}", samples=latent, vae=models.vae)
    scaled = b.add(
        "ImageScale",
        f"Hires upscale {index}",
        image=[decoded, 0],
        upscale_method=hires.upscaler.method,
        width=hires.width,
        height=hires.height,
        crop=crop,
    )
    return [b.add("VAEEncode", f"Hires encode {index}", pixels=[scaled, 0], vae=models.vae), 0]
