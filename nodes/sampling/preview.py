"""Cheap sampler previews: a linear latent → RGB projection (ComfyUI's ``latent2rgb``).

The first image of the batch's denoised estimate (in model space) is projected with the model
family's per-channel RGB factors (plus bias), mapped from [-1, 1] to bytes, at latent resolution;
the server fits it into ``max_size`` when it encodes the preview frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nodes.sockets import LatentFormat

PREVIEW_METHODS = ("auto", "latent2rgb")  # methods that produce latent2rgb previews; "none" disables


@dataclass(frozen=True)
class LatentPreview:
    """A preview image for ``ctx.progress`` (satisfies ``graphengine.node.ProgressPreview``)."""

    image: Any  # PIL.Image.Image
    format: str = "JPEG"
    max_size: int | None = 512


class Latent2RGB:
    """Projects model-space latents to a small RGB PIL image."""

    def __init__(self, latent_format: LatentFormat):
        if latent_format.latent_rgb_factors is None:
            raise ValueError("this latent format has no latent-to-RGB factors")
        self.weight = torch.tensor(latent_format.latent_rgb_factors, dtype=torch.float32).transpose(0, 1)
        self.bias = None
        if latent_format.latent_rgb_bias is not None:
            self.bias = torch.tensor(latent_format.latent_rgb_bias, dtype=torch.float32)

    def __call__(self, x0: torch.Tensor) -> Any:
        from PIL import Image

        first = x0[0].detach().to("cpu", torch.float32)
        rgb = F.linear(first.movedim(0, -1), self.weight, bias=self.bias)
        pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(0xFF).to(torch.uint8)
        return Image.fromarray(pixels.numpy())


def make_previewer(method: str, latent_format: LatentFormat) -> Latent2RGB | None:
    """The previewer for a preview method, or None when previews are off or the model has no factors."""
    if method not in PREVIEW_METHODS or latent_format.latent_rgb_factors is None:
        return None
    return Latent2RGB(latent_format)
