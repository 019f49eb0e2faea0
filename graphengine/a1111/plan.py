"""A generation request resolved and checked: models, sampler, seeds, sizes, images, hires fix.

``plan_generation`` turns a parsed ``Txt2ImgRequest`` / ``Img2ImgRequest`` into a
``GenerationPlan`` or raises ``RequestRejected`` naming the field, before anything is queued. The
plan is what the graph builder (``graphengine.a1111.graph``) and the ``info`` writer read; it holds
no client text other than prompts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from graphengine.a1111.catalog import ModelCatalog, ModelEntry, UnknownModel
from graphengine.a1111.extra_networks import ExtraNetworkSyntaxError, LoraTag, extract_loras
from graphengine.a1111.images import (
    BadImage,
    DecodedImage,
    decode_image,
    place,
    png_base64,
    prepare_mask,
    resize_and_fill,
)
from graphengine.a1111.names import NameResolver, SamplerChoice, UnknownSampler
from graphengine.a1111.options import A1111Options, OptionsStore
from graphengine.a1111.requests import MAX_SEED, Img2ImgRequest, Txt2ImgRequest, validation_detail
from graphengine.environment import Limits

LATENT_UPSCALE_MODES: dict[str, str] = {
    "Latent": "bilinear",
    "Latent (antialiased)": "bilinear",
    "Latent (bicubic)": "bicubic",
    "Latent (bicubic antialiased)": "bicubic",
    "Latent (nearest)": "nearest-exact",
    "Latent (nearest-exact)": "nearest-exact",
}
IMAGE_UPSCALERS: dict[str, str] = {"None": "lanczos", "Lanczos": "lanczos", "Nearest": "nearest-exact"}
DEFAULT_HR_UPSCALER = "Latent"
NO_MODEL = ("", "none", "automatic", "use same checkpoint", "use same sampler", "use same scheduler")


class RequestRejected(ValueError):
    """A request that cannot be run as asked; ``field`` is named in the ``detail`` clients show."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status

    @property
    def detail(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class SamplingPass:
    """One KSampler pass: ``steps`` and ``denoise`` are what the node receives."""

    choice: SamplerChoice
    steps: int
    denoise: float
    positive: str
    negative: str
    cfg: float


@dataclass(frozen=True)
class Upscaler:
    name: str
    method: str
    latent: bool


@dataclass(frozen=True)
class HiresFix:
    upscaler: Upscaler
    width: int
    height: int
    crop: bool
    second: SamplingPass
    checkpoint: ModelEntry | None  # None: same model as the first pass


@dataclass(frozen=True)
class InitImages:
    """img2img sources as base64 payloads already at the target size when ``scaled`` is False."""

    images: tuple[str, ...]
    needs_scale: tuple[bool, ...]
    resize_mode: int
    mask: str | None
    inpainting_fill: int
    placed: tuple[Any, ...] = ()  # the sources as PIL images at the target size (inpainting overlay)


@dataclass(frozen=True)
class GenerationPlan:
    mode: str  # "txt2img" | "img2img"
    checkpoint: ModelEntry
    vae: str | None
    clip_skip: int
    loras: tuple[LoraTag, ...]
    first: SamplingPass
    width: int
    height: int
    batch_size: int
    n_iter: int
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...]
    hires: HiresFix | None
    init: InitImages | None
    save: bool
    prompt: str
    negative_prompt: str
    denoising_strength: float | None
    options: A1111Options


@dataclass(frozen=True)
class PlanContext:
    """What planning needs from the server: names, models, options, limits, a random source."""

    resolver: NameResolver
    catalog: ModelCatalog
    options: OptionsStore
    limits: Limits
    rng: random.Random = field(default_factory=random.SystemRandom)


def script_is_inactive(value: Any) -> bool:
    """Whether an ``alwayson_scripts`` entry asks for nothing (empty, or every unit disabled)."""
    if not value:
        return True
    if not isinstance(value, Mapping):
        return False
    args = value.get("args")
    if args is None or args == [] or args == {}:
        return not any(key != "args" for key in value)
    if isinstance(args, list):
        if args and isinstance(args[0], bool):
            return args[0] is False  # extensions such as ADetailer put their enable flag first
        units = [a for a in args if isinstance(a, Mapping)]
        if units and len(units) == len(args):
            return all(unit.get("enabled") in (False, None, 0, "false") for unit in units)
    return False


def _checkpoint(req: Txt2ImgRequest, options: A1111Options, ctx: PlanContext) -> ModelEntry:
    requested = [
        ("sd_model_checkpoint", req.sd_model_checkpoint),
        ("override_settings.sd_model_checkpoint", req.override_settings.get("sd_model_checkpoint")),
    ]
    for field_name, value in requested:
        if isinstance(value, str) and value.strip():
            try:
                return ctx.catalog.entry("checkpoints", ctx.catalog.resolve("checkpoints", value))
            except UnknownModel as exc:
                raise RequestRejected(field_name, str(exc)) from None
    available = ctx.catalog.names("checkpoints")
    if not available:
        raise RequestRejected("sd_model_checkpoint", "no checkpoint is installed in models/checkpoints", status=503)
    if options.sd_model_checkpoint:
        try:
            return ctx.catalog.entry("checkpoints", ctx.catalog.resolve("checkpoints", options.sd_model_checkpoint))
        except UnknownModel:
            pass  # the configured model was removed: use the first one, as A1111 does
    return ctx.catalog.entry("checkpoints", available[0])


def _vae(options: A1111Options, ctx: PlanContext, field_name: str) -> str | None:
    if options.sd_vae.strip().casefold() in NO_MODEL:
        return None
    try:
        return ctx.catalog.resolve("vae", options.sd_vae)
    except UnknownModel as exc:
        raise RequestRejected(field_name, str(exc)) from None


def _loras(prompt: str, req: Txt2ImgRequest, ctx: PlanContext) -> tuple[str, tuple[LoraTag, ...]]:
    try:
        text, tags = extract_loras(prompt)
    except ExtraNetworkSyntaxError as exc:
        raise RequestRejected("prompt", str(exc)) from None
    if req.disable_extra_networks:
        return text, ()
    resolved = []
    for tag in tags:
        try:
            name = ctx.catalog.resolve("loras", tag.name)
        except UnknownModel as exc:
            raise RequestRejected("prompt", f"<lora:{tag.name}>: {exc}") from None
        resolved.append(LoraTag(name=name, model_weight=tag.model_weight, clip_weight=tag.clip_weight))
    return text, tuple(resolved)


def _seeds(seed: int, count: int, ctx: PlanContext, field_name: str) -> tuple[int, ...]:
    first = seed if seed >= 0 else ctx.rng.randrange(4294967294)
    if first + count - 1 > MAX_SEED:
        raise RequestRejected(field_name, f"seed + image count exceeds {MAX_SEED}")
    return tuple(first + i for i in range(count))


def _check_pixels(width: int, height: int, ctx: PlanContext, field_name: str) -> None:
    if width > ctx.limits.max_latent_side or height > ctx.limits.max_latent_side:
        raise RequestRejected(field_name, f"{width}x{height} exceeds the largest side of {ctx.limits.max_latent_side}")
    if width * height > ctx.limits.max_image_pixels:
        raise RequestRejected(
            field_name, f"{width}x{height} = {width * height} pixels exceeds the limit of {ctx.limits.max_image_pixels}"
        )


def _upscaler(name: str | None) -> Upscaler:
    wanted = (name or DEFAULT_HR_UPSCALER).strip()
    for table, latent in ((LATENT_UPSCALE_MODES, True), (IMAGE_UPSCALERS, False)):
        for known, method in table.items():
            if known.casefold() == wanted.casefold():
                return Upscaler(known, method, latent)
    available = ", ".join([*LATENT_UPSCALE_MODES, *IMAGE_UPSCALERS])
    raise RequestRejected("hr_upscaler", f"upscaler {wanted!r} is not available (available: {available})")


def _named(value: str | None) -> str:
    """A client's optional name, or "" for the spellings that mean "same as before / none"."""
    text = (value or "").strip()
    return "" if text.casefold() in NO_MODEL else text


def _multiple_of_8_down(value: float) -> int:
    return max(64, int(value) // 8 * 8)


def _hires(req: Txt2ImgRequest, first: SamplingPass, ctx: PlanContext, positive: str) -> HiresFix:
    upscaler = _upscaler(req.hr_upscaler)
    crop = False
    if req.hr_resize_x == 0 and req.hr_resize_y == 0:
        width, height = _multiple_of_8_down(req.width * req.hr_scale), _multiple_of_8_down(req.height * req.hr_scale)
    elif req.hr_resize_x == 0:
        height = req.hr_resize_y
        width = _multiple_of_8_down(req.width * req.hr_resize_y / req.height)
    elif req.hr_resize_y == 0:
        width = req.hr_resize_x
        height = _multiple_of_8_down(req.height * req.hr_resize_x / req.width)
    else:
        width, height, crop = req.hr_resize_x, req.hr_resize_y, True
    _check_pixels(width, height, ctx, "hr_scale" if not (req.hr_resize_x or req.hr_resize_y) else "hr_resize_x")
    sampler = first.choice
    hr_sampler, hr_scheduler = _named(req.hr_sampler_name), _named(req.hr_scheduler)
    if hr_sampler or hr_scheduler:
        try:
            sampler = ctx.resolver.resolve(
                hr_sampler or first.choice.sampler.name, hr_scheduler or first.choice.scheduler.name
            )
        except UnknownSampler as exc:
            raise RequestRejected("hr_sampler_name", f"unknown sampler {str(exc)!r}") from None
    checkpoint = None
    if _named(req.hr_checkpoint_name):
        try:
            checkpoint = ctx.catalog.entry("checkpoints", ctx.catalog.resolve("checkpoints", _named(req.hr_checkpoint_name)))
        except UnknownModel as exc:
            raise RequestRejected("hr_checkpoint_name", str(exc)) from None
    hr_positive = positive
    if req.hr_prompt.strip():
        hr_positive, _ = extract_loras(req.hr_prompt)
    second = SamplingPass(
        choice=sampler,
        steps=req.hr_second_pass_steps or req.steps,
        denoise=req.denoising_strength,
        positive=hr_positive,
        negative=req.hr_negative_prompt if req.hr_negative_prompt.strip() else first.negative,
        cfg=req.cfg_scale,
    )
    return HiresFix(upscaler=upscaler, width=width, height=height, crop=crop, second=second, checkpoint=checkpoint)


def _init_images(req: Img2ImgRequest, ctx: PlanContext) -> InitImages:
    payloads, needs_scale, placed = [], [], []
    for index, text in enumerate(req.init_images):
        decoded = decode_or_reject(text, f"init_images.{index}", ctx)
        same_size = (decoded.width, decoded.height) == (req.width, req.height)
        if req.resize_mode == 2 and not same_size:
            filled = resize_and_fill(decoded.image, req.width, req.height)
            payloads.append(png_base64(filled))
            needs_scale.append(False)
            placed.append(filled)
        else:
            payloads.append(decoded.base64)
            needs_scale.append(not same_size)
            if req.mask:
                placed.append(place(decoded.image, req.width, req.height, req.resize_mode))
    mask = None
    if req.mask:
        decoded_mask = decode_or_reject(req.mask, "mask", ctx)
        mask = prepare_mask(
            decoded_mask.image,
            req.width,
            req.height,
            mode=req.resize_mode,
            blur=req.mask_blur,
            invert=bool(req.inpainting_mask_invert),
        )
    return InitImages(
        tuple(payloads), tuple(needs_scale), req.resize_mode, mask, req.inpainting_fill, tuple(placed) if mask else ()
    )


def decode_or_reject(text: str, field_name: str, ctx: PlanContext) -> DecodedImage:
    try:
        return decode_image(text, field_name, ctx.limits.max_image_pixels)
    except BadImage as exc:
        raise RequestRejected(exc.field, exc.message) from None


def plan_generation(req: Txt2ImgRequest, ctx: PlanContext) -> GenerationPlan:
    """Resolve and check a request; raises ``RequestRejected``."""
    if _named(req.script_name):
        raise RequestRejected("script_name", f"script {req.script_name!r} is not available on this server")
    for name, value in req.alwayson_scripts.items():
        if not script_is_inactive(value):
            raise RequestRejected(f"alwayson_scripts.{name}", f"the {name!r} script is not available on this server")
    if _named(req.refiner_checkpoint):
        raise RequestRejected("refiner_checkpoint", "refiner checkpoints are not supported")
    try:
        options = ctx.options.effective(req.override_settings)
    except ValidationError as exc:
        detail, _ = validation_detail(exc)
        raise RequestRejected("override_settings", detail) from None
    _check_pixels(req.width, req.height, ctx, "width")
    try:
        choice = ctx.resolver.resolve(req.requested_sampler, req.scheduler)
    except UnknownSampler as exc:
        field_name = "sampler_name" if req.sampler_name else "sampler_index"
        known = ", ".join(s.name for s in ctx.resolver.samplers)
        raise RequestRejected(field_name, f"unknown sampler {str(exc)!r} (available: {known})") from None
    checkpoint = _checkpoint(req, options, ctx)
    vae = _vae(options, ctx, "override_settings.sd_vae" if "sd_vae" in req.override_settings else "sd_vae")
    positive, loras = _loras(req.prompt, req, ctx)
    is_img2img = isinstance(req, Img2ImgRequest)
    denoise = req.denoising_strength if is_img2img else 1.0
    steps = req.steps
    if is_img2img and denoise < 1.0 and not options.img2img_fix_steps:
        steps = max(1, int(denoise * req.steps))  # A1111 runs steps × denoise of a `steps` schedule
    first = SamplingPass(choice, steps, denoise, positive, req.negative_prompt, req.cfg_scale)
    count = req.batch_size * req.n_iter
    seeds = _seeds(req.seed, count, ctx, "seed")
    subseeds = _seeds(req.subseed, count, ctx, "subseed")
    hires = _hires(req, first, ctx, positive) if req.enable_hr and not is_img2img else None
    init = _init_images(req, ctx) if is_img2img else None
    clip_skip = options.CLIP_stop_at_last_layers
    if req.clip_skip is not None and "CLIP_stop_at_last_layers" not in req.override_settings:
        clip_skip = req.clip_skip  # SD.Next's top-level key; A1111's override wins when both are sent
    return GenerationPlan(
        mode="img2img" if is_img2img else "txt2img",
        checkpoint=checkpoint,
        vae=vae,
        clip_skip=clip_skip,
        loras=loras,
        first=first,
        width=req.width,
        height=req.height,
        batch_size=req.batch_size,
        n_iter=req.n_iter,
        seeds=seeds,
        subseeds=subseeds,
        hires=hires,
        init=init,
        save=req.save_images,
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        denoising_strength=req.denoising_strength if (is_img2img or hires) else None,
        options=options,
    )
