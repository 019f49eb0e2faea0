"""Latent nodes: empty latents, resizing, inpainting masks (ComfyUI's names and behaviour).

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from graphengine.errors import NodeInputError
from graphengine.node import Combo, Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Latent, Mask

if TYPE_CHECKING:
    from graphengine.environment import Environment, Limits

MAX_SIDE = 16384
LATENT_CHANNELS = 4  # SD1.x/SDXL; the sampler repeats an all-zero latent to other models' channel counts
DOWNSCALE = 8
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")
CROP_METHODS = ("disabled", "center")
BATCH_PIXEL_FACTOR = 16  # a batch may hold up to 16 × max_image_pixels pixels (4096 images of 512²)


def empty_latent_problem(width: Any, height: Any, batch_size: Any, limits: Limits) -> str | None:
    """Why these EmptyLatentImage values cannot work, or None.

    Unlike ComfyUI, which silently floors to a multiple of 8 (a 500-pixel request gives 496), sizes
    that are not multiples of 8 are refused, so a client never receives an image of another size
    than it asked for.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, int) and value % DOWNSCALE:
            lower, upper = value - value % DOWNSCALE, value - value % DOWNSCALE + DOWNSCALE
            return f"{name} {value} is not a multiple of {DOWNSCALE} (the latent is 1/8 of the image); use {lower} or {upper}"
    if all(isinstance(v, int) for v in (width, height, batch_size)):
        if width * height > limits.max_image_pixels:
            return f"{width}×{height} is over the limit of {limits.max_image_pixels} pixels per image"
        if width * height * batch_size > BATCH_PIXEL_FACTOR * limits.max_image_pixels:
            return (
                f"a batch of {batch_size} images of {width}×{height} is over the limit of "
                f"{BATCH_PIXEL_FACTOR * limits.max_image_pixels} pixels per batch"
            )
    return None


class EmptyLatentImage(Node):
    """A batch of all-zero latents for text-to-image ([B, 4, height/8, width/8]). Width and height
    must be multiples of 8."""

    display_name: ClassVar[str] = "Empty Latent Image"
    category: ClassVar[str] = "latent"

    width: int = Input(512, min=16, max=MAX_SIDE, step=8, tooltip="The width of the latent images in pixels.")
    height: int = Input(512, min=16, max=MAX_SIDE, step=8, tooltip="The height of the latent images in pixels.")
    batch_size: int = Input(1, min=1, max=4096, tooltip="The number of latent images in the batch.")

    class Outputs(NodeOutputs):
        latent: Latent = Output(name="LATENT", tooltip="The empty latent image batch.")

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        return empty_latent_problem(literals.get("width"), literals.get("height"), literals.get("batch_size", 1), env.limits)

    def run(self, ctx: NodeContext) -> EmptyLatentImage.Outputs:
        import torch

        problem = empty_latent_problem(self.width, self.height, self.batch_size, ctx.env.limits)
        if problem:
            raise NodeInputError(problem)
        shape = (self.batch_size, LATENT_CHANNELS, self.height // DOWNSCALE, self.width // DOWNSCALE)
        return self.Outputs(latent=Latent(samples=torch.zeros(shape, dtype=torch.float32)))


def _resized(latent: Latent, samples: Any) -> Latent:
    """The latent with new samples; the noise mask and batch indices are kept (the sampler resizes
    the mask to the latent)."""
    return Latent(samples=samples, noise_mask=latent.noise_mask, batch_index=latent.batch_index)


def _check_latent_size(width: int, height: int, batch: int, ctx: NodeContext) -> None:
    problem = empty_latent_problem(width * DOWNSCALE, height * DOWNSCALE, batch, ctx.env.limits)
    if problem:
        raise NodeInputError(problem)


class LatentUpscale(Node):
    """Resize latents to a size in pixels (rounded down to a multiple of 8, at least 64). 0 for one
    side keeps the aspect ratio; 0 for both leaves the latents as they are."""

    display_name: ClassVar[str] = "Upscale Latent"
    category: ClassVar[str] = "latent"

    samples: Latent = Input()
    upscale_method: str = Combo(UPSCALE_METHODS)
    width: int = Input(512, min=0, max=MAX_SIDE, step=8)
    height: int = Input(512, min=0, max=MAX_SIDE, step=8)
    crop: str = Combo(CROP_METHODS)

    class Outputs(NodeOutputs):
        latent: Latent = Output(name="LATENT")

    def run(self, ctx: NodeContext) -> LatentUpscale.Outputs:
        from nodes._imaging import upscale

        samples = self.samples.samples
        if self.width == 0 and self.height == 0:
            return self.Outputs(latent=self.samples)
        old_height, old_width = samples.shape[-2], samples.shape[-1]
        width, height = self.width, self.height
        if width == 0:
            height = max(64, height)
            width = max(64, round(old_width * height / old_height))
        elif height == 0:
            width = max(64, width)
            height = max(64, round(old_height * width / old_width))
        else:
            width, height = max(64, width), max(64, height)
        width, height = width // DOWNSCALE, height // DOWNSCALE
        _check_latent_size(width, height, samples.shape[0], ctx)
        resized = upscale(samples, width, height, self.upscale_method, self.crop)
        return self.Outputs(latent=_resized(self.samples, resized))


class LatentUpscaleBy(Node):
    """Resize latents by a factor."""

    display_name: ClassVar[str] = "Upscale Latent By"
    category: ClassVar[str] = "latent"

    samples: Latent = Input()
    upscale_method: str = Combo(UPSCALE_METHODS)
    scale_by: float = Input(1.5, min=0.01, max=8.0, step=0.01)

    class Outputs(NodeOutputs):
        latent: Latent = Output(name="LATENT")

    def run(self, ctx: NodeContext) -> LatentUpscaleBy.Outputs:
        from nodes._imaging import scaled_size, upscale

        samples = self.samples.samples
        width, height = scaled_size(samples.shape[-1], samples.shape[-2], self.scale_by)
        _check_latent_size(width, height, samples.shape[0], ctx)
        resized = upscale(samples, width, height, self.upscale_method, "disabled")
        return self.Outputs(latent=_resized(self.samples, resized))


class SetLatentNoiseMask(Node):
    """Attach an inpainting mask to latents: the sampler only regenerates where the mask is 1."""

    display_name: ClassVar[str] = "Set Latent Noise Mask"
    category: ClassVar[str] = "latent/inpaint"

    samples: Latent = Input()
    mask: Mask = Input()

    class Outputs(NodeOutputs):
        latent: Latent = Output(name="LATENT")

    def run(self, ctx: NodeContext) -> SetLatentNoiseMask.Outputs:
        values = self.mask.values
        if values.ndim < 2:
            raise NodeInputError(f"mask must be [B, H, W] or [H, W], got shape {tuple(values.shape)}")
        noise_mask = values.reshape((-1, 1, values.shape[-2], values.shape[-1])).to(self.samples.samples.dtype)
        latent = Latent(samples=self.samples.samples, noise_mask=noise_mask, batch_index=self.samples.batch_index)
        return self.Outputs(latent=latent)


def pack() -> NodePack:
    return NodePack(name="latent", nodes=(EmptyLatentImage, LatentUpscale, LatentUpscaleBy, SetLatentNoiseMask))
