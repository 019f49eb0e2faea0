"""Request bodies of the ``/sdapi/v1`` generation routes, as A1111 / SD.Next clients send them.

The models accept what real clients send: unknown keys are ignored (SillyTavern leaks its own ``url``
and ``auth`` into the body; Forge, SD.Next and webuiapi add keys of their own), ``null`` means "the
default", numbers may arrive as strings. What would change the picture and cannot be honoured is an
error naming the field, never silently dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_SEED = 2**64 - 1
MAX_SIDE = 16384


def _multiple_of_8(value: int) -> int:
    if value % 8:
        raise ValueError(f"must be a multiple of 8 (got {value})")
    return value


class LenientModel(BaseModel):
    """Ignores unknown keys and treats an explicit ``null`` as "use the default"."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class Txt2ImgRequest(LenientModel):
    """``POST /sdapi/v1/txt2img``: A1111's text-to-image body."""

    prompt: str = Field("", description="Positive prompt; `<lora:name:weight>` tags load LoRAs.")
    negative_prompt: str = Field("", description="Negative prompt.")
    styles: list[str] = Field(default_factory=list, description="Prompt styles (none are defined; ignored).")
    seed: int = Field(-1, le=MAX_SEED, description="Seed of the first image; -1 = random. Image i uses seed + i.")
    subseed: int = Field(-1, le=MAX_SEED, description="Variation seed (unused unless subseed_strength > 0).")
    subseed_strength: float = Field(0.0, ge=0.0, le=0.0, description="Variation strength; only 0 is supported.")
    sampler_name: str | None = Field(None, description='Sampler, e.g. "Euler a", "DPM++ 2M", "DPM++ 2M Karras".')
    sampler_index: str | None = Field(None, description="Legacy spelling of sampler_name.")
    scheduler: str | None = Field(None, description='Schedule type: "Automatic", "Karras", "karras", …')
    batch_size: int = Field(1, ge=1, le=64, description="Images per iteration.")
    n_iter: int = Field(1, ge=1, le=100, description="Iterations (batches run one after another).")
    steps: int = Field(50, ge=1, le=10000, description="Sampling steps.")
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0, description="Classifier-free guidance scale.")
    width: int = Field(512, ge=64, le=MAX_SIDE, description="Width in pixels, a multiple of 8.")
    height: int = Field(512, ge=64, le=MAX_SIDE, description="Height in pixels, a multiple of 8.")
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0, description="Hires-fix second-pass denoise.")
    restore_faces: bool = Field(False, description="Not available here; ignored.")
    tiling: bool = Field(False, description="Not available here; ignored.")
    override_settings: dict[str, Any] = Field(
        default_factory=dict, description="Options for this request (sd_model_checkpoint, sd_vae, CLIP_stop_at_last_layers)."
    )
    override_settings_restore_afterwards: bool = Field(True, description="False keeps override_settings afterwards.")
    sd_model_checkpoint: str | None = Field(None, description='SD.Next: checkpoint for this request ("" = current).')
    clip_skip: int | None = Field(None, ge=1, le=24, description="SD.Next: CLIP layers to skip (1 = none).")
    refiner_checkpoint: str | None = Field(None, description="Refiners are not supported: leave empty.")
    disable_extra_networks: bool = Field(False, description="Strip <lora:…> tags without applying them.")
    enable_hr: bool = Field(False, description="Hires fix: upscale and run a second pass.")
    hr_scale: float = Field(2.0, gt=0.0, le=8.0, description="Hires-fix scale when hr_resize_x/y are 0.")
    hr_upscaler: str | None = Field(None, description='Hires-fix upscaler: "Latent…" modes, "Lanczos", "Nearest", "None".')
    hr_second_pass_steps: int = Field(0, ge=0, le=10000, description="Second-pass steps (0 = steps).")
    hr_resize_x: int = Field(0, ge=0, le=MAX_SIDE, description="Hires-fix target width (0 = from hr_scale).")
    hr_resize_y: int = Field(0, ge=0, le=MAX_SIDE, description="Hires-fix target height (0 = from hr_scale).")
    hr_checkpoint_name: str | None = Field(None, description="Checkpoint of the second pass (empty = same).")
    hr_sampler_name: str | None = Field(None, description="Sampler of the second pass (empty = same).")
    hr_scheduler: str | None = Field(None, description="Scheduler of the second pass (empty = same).")
    hr_prompt: str = Field("", description="Second-pass prompt (empty = same).")
    hr_negative_prompt: str = Field("", description="Second-pass negative prompt (empty = same).")
    script_name: str | None = Field(None, description="Scripts are not supported: leave empty.")
    script_args: list[Any] = Field(default_factory=list, description="Ignored (no scripts).")
    send_images: bool = Field(True, description="Return the images in the response.")
    save_images: bool = Field(False, description="Also keep the images in the output directory.")
    alwayson_scripts: dict[str, Any] = Field(
        default_factory=dict, description="Always-on scripts; only empty or disabled entries are accepted."
    )

    @field_validator("width", "height")
    @classmethod
    def _sides(cls, value: int) -> int:
        return _multiple_of_8(value)

    @field_validator("hr_resize_x", "hr_resize_y")
    @classmethod
    def _hr_sides(cls, value: int) -> int:
        return _multiple_of_8(value) if value else value

    @property
    def requested_sampler(self) -> str | None:
        return self.sampler_name or self.sampler_index

    def echo(self) -> dict[str, Any]:
        """The ``parameters`` object of the response: this request with defaults filled in."""
        return self.model_dump(mode="json")


class Img2ImgRequest(Txt2ImgRequest):
    """``POST /sdapi/v1/img2img``: image-to-image and inpainting."""

    init_images: list[str] = Field(
        ..., min_length=1, description="Source images, raw base64 or data URLs; image i uses init_images[i % n]."
    )
    resize_mode: int = Field(
        0, ge=0, le=3, description="0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale."
    )
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0, description="How much of the image is regenerated.")
    mask: str | None = Field(None, description="Inpainting mask (white = repaint), raw base64 or data URL.")
    mask_blur: int = Field(4, ge=0, le=256, description="Gaussian blur radius applied to the mask.")
    inpainting_fill: int = Field(
        0, ge=0, le=3, description="Masked content: 0 fill, 1 original, 2 latent noise, 3 latent nothing."
    )
    inpaint_full_res: bool = Field(False, description="'Only masked' is not supported; the whole image is used.")
    inpaint_full_res_padding: int = Field(0, ge=0, description="Ignored.")
    inpainting_mask_invert: int = Field(0, ge=0, le=1, description="1 = repaint the black part of the mask.")
    image_cfg_scale: float | None = Field(None, description="Ignored (instruct-pix2pix only).")
    include_init_images: bool = Field(False, description="Echo init_images in parameters.")

    def echo(self) -> dict[str, Any]:
        params = self.model_dump(mode="json")
        if not self.include_init_images:
            params["init_images"] = None
            params["mask"] = None
        return params


class PngInfoRequest(LenientModel):
    """``POST /sdapi/v1/png-info``."""

    image: str = Field(..., description="PNG as raw base64 or data URL.")


class InterruptRequest(LenientModel):
    """Optional body of ``/sdapi/v1/interrupt`` and ``/skip`` (clients send none)."""


def validation_detail(error: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    """A one-line ``detail`` naming every bad field, plus FastAPI-style ``errors``."""
    parts: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in item.get("loc", ())) or "body"
        message = str(item.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        parts.append(f"{loc}: {message}")
        errors.append({"loc": ["body", *item.get("loc", ())], "msg": message, "type": item.get("type", "value_error")})
    return "; ".join(parts), errors

