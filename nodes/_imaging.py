"""Pixel and latent arithmetic behind the image, latent and output nodes (imports torch).

Node pack modules import this lazily inside ``run()`` so that loading packs stays torch-free.
Conventions (ComfyUI's): images ``[B, H, W, 3]`` float32 in 0..1, masks ``[B, H, W]``, latents
``[B, C, h, w]``; resizing works on channel-first ``[B, C, H, W]``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from graphengine.errors import NodeInputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

UPSCALE_METHODS_IMAGE = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
UPSCALE_METHODS_LATENT = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")
CROP_METHODS = ("disabled", "center")
EMPTY_MASK_SIDE = 64  # ComfyUI's mask for an image without alpha: 64×64 zeros


# --- PIL ⇄ tensors ----------------------------------------------------------------------------------


def quantize(pixels: torch.Tensor) -> np.ndarray:
    """ComfyUI's SaveImage quantisation: ``clip(255 * x, 0, 255)`` truncated to uint8 (NaN → 0)."""
    scaled = pixels.detach().to("cpu", torch.float32).numpy() * np.float32(255.0)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def to_pil_images(pixels: torch.Tensor) -> list[PILImage.Image]:
    """One RGB PIL image per batch item of an ``[B, H, W, 3]`` tensor."""
    from PIL import Image

    if pixels.ndim == 3:
        pixels = pixels.unsqueeze(0)
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3, 4):
        raise NodeInputError(f"expected an image batch [B, H, W, 3], got shape {tuple(pixels.shape)}")
    images = []
    for array in quantize(pixels):
        if array.shape[-1] == 1:
            images.append(Image.fromarray(array[..., 0], mode="L"))
        else:
            images.append(Image.fromarray(array, mode="RGB" if array.shape[-1] == 3 else "RGBA"))
    return images


def _rgb_array(frame: PILImage.Image) -> np.ndarray:
    if frame.mode in ("I", "I;16", "I;16B", "I;16L"):
        frame = frame.convert("I").point(lambda value: value * (1 / 255))  # ComfyUI's 16-bit handling
    return np.asarray(frame.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _alpha_array(frame: PILImage.Image) -> np.ndarray | None:
    if "A" in frame.getbands():
        return np.asarray(frame.getchannel("A"), dtype=np.float32) / np.float32(255.0)
    if frame.mode == "P" and "transparency" in frame.info:
        return np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / np.float32(255.0)
    return None


def image_and_mask_from_pil(image: PILImage.Image, *, all_frames: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """LoadImage's conversion: ``([B, H, W, 3], [B, H', W'])``.

    Every frame of an animation becomes a batch item (not for MPO, whose extra frames are thumbnails
    and depth maps); frames of another size than the first are skipped; EXIF orientation is applied.
    The mask is ``1 - alpha``; without alpha in any frame it is ComfyUI's ``64×64`` zeros per item.
    """
    from PIL import ImageOps, ImageSequence

    frames = ImageSequence.Iterator(image) if all_frames and image.format != "MPO" else [image]
    rgbs: list[np.ndarray] = []
    alphas: list[np.ndarray | None] = []
    size = None
    for frame in frames:
        frame = ImageOps.exif_transpose(frame)
        if size is None:
            size = frame.size
        if frame.size != size:
            continue
        rgbs.append(_rgb_array(frame))
        alphas.append(_alpha_array(frame))
    pixels = torch.from_numpy(np.stack(rgbs))
    if all(alpha is None for alpha in alphas):
        mask = torch.zeros((len(rgbs), EMPTY_MASK_SIDE, EMPTY_MASK_SIDE), dtype=torch.float32)
    else:
        height, width = rgbs[0].shape[:2]
        mask = torch.stack(
            [torch.zeros((height, width)) if a is None else 1.0 - torch.from_numpy(a) for a in alphas]
        )
    return pixels, mask


def mask_from_pil_channel(image: PILImage.Image, channel: str) -> torch.Tensor:
    """LoadImageMask's conversion: one channel as ``[1, H, W]``; alpha inverted (1 - alpha)."""
    from PIL import ImageOps

    frame = ImageOps.exif_transpose(image)
    if frame.getbands() != ("R", "G", "B", "A"):
        if frame.mode in ("I", "I;16", "I;16B", "I;16L"):
            frame = frame.convert("I").point(lambda value: value * (1 / 255))
        frame = frame.convert("RGBA")
    band = channel[0].upper()
    values = torch.from_numpy(np.asarray(frame.getchannel(band), dtype=np.float32) / np.float32(255.0))
    if band == "A":
        values = 1.0 - values
    return values.unsqueeze(0)


def mask_from_pil_first_channel(image: PILImage.Image) -> torch.Tensor:
    """ETN_LoadMaskBase64's conversion: the first channel (red, or the grey level) as ``[1, H, W]``."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image.convert("F"), dtype=np.float32)
        array = array / np.float32(65535.0 if image.mode.startswith("I") else 1.0)
        return torch.from_numpy(np.clip(array, 0.0, 1.0)).unsqueeze(0)
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA")
    array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    if array.ndim == 3:
        array = array[:, :, 0]
    return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0)


# --- resizing ---------------------------------------------------------------------------------------


def center_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop ``[..., H, W]`` symmetrically so its aspect ratio matches ``width / height``."""
    old_height, old_width = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_width / old_height, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    return samples[..., y : old_height - y, x : old_width - x]


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of channel vectors (last dim) with linearly interpolated length."""
    eps = 1e-8
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a = a / norm_a.clamp_min(eps)
    unit_b = b / norm_b.clamp_min(eps)
    cosine = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cosine)
    sine = torch.sin(omega)
    curved = sine > 1e-4
    safe_sine = torch.where(curved, sine, torch.ones_like(sine))
    weight_a = torch.where(curved, torch.sin((1.0 - t) * omega) / safe_sine, 1.0 - t)
    weight_b = torch.where(curved, torch.sin(t * omega) / safe_sine, t)
    direction = weight_a * unit_a + weight_b * unit_b
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps)
    result = direction * ((1.0 - t) * norm_a + t * norm_b)
    degenerate = (norm_a < eps) | (norm_b < eps)
    return torch.where(degenerate, (1.0 - t) * a + t * b, result)


def _slerp_along(values: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """Resize channel-last ``values`` along ``dim`` with half-pixel centres and slerped neighbours."""
    in_size = values.shape[dim]
    positions = (torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5
    positions = positions.clamp(0, in_size - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=in_size - 1)
    fraction = (positions - low).to(values.dtype)
    shape = [1] * values.ndim
    shape[dim] = out_size
    return _slerp(values.index_select(dim, low), values.index_select(dim, high), fraction.view(shape))


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resize of ``[B, C, H, W]`` that slerps channel vectors (keeps latent statistics)."""
    dtype = samples.dtype
    values = samples.to(torch.float32).movedim(1, -1)  # [B, H, W, C]
    values = _slerp_along(values, width, 2)
    values = _slerp_along(values, height, 1)
    return values.movedim(-1, 1).to(dtype)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos resize through Pillow, per channel, on 8-bit values as ComfyUI does."""
    from PIL import Image

    out = torch.empty((samples.shape[0], samples.shape[1], height, width), dtype=torch.float32)
    quantized = quantize(samples)
    for b in range(samples.shape[0]):
        for c in range(samples.shape[1]):
            channel = Image.fromarray(quantized[b, c], mode="L").resize((width, height), Image.Resampling.LANCZOS)
            out[b, c] = torch.from_numpy(np.asarray(channel, dtype=np.float32) / np.float32(255.0))
    return out.to(samples.dtype)


def upscale(samples: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` to ``height × width`` (ComfyUI's ``common_upscale``)."""
    if width < 1 or height < 1:
        raise NodeInputError(f"cannot resize to {width}×{height}")
    if crop == "center":
        samples = center_crop_to_aspect(samples, width, height)
    elif crop != "disabled":
        raise NodeInputError(f"unknown crop {crop!r}; expected one of {', '.join(CROP_METHODS)}")
    if method == "bislerp":
        return bislerp(samples, width, height)
    if method == "lanczos":
        return lanczos(samples, width, height)
    if method not in ("nearest-exact", "bilinear", "area", "bicubic"):
        raise NodeInputError(f"unknown upscale method {method!r}")
    return F.interpolate(samples, size=(height, width), mode=method)


def resize_images(pixels: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """``upscale`` for ``[B, H, W, C]`` images."""
    return upscale(pixels.movedim(-1, 1), width, height, method, crop).movedim(1, -1).contiguous()


def keep_aspect(old_width: int, old_height: int, width: int, height: int, minimum: int = 1) -> tuple[int, int]:
    """Fill a zero ``width`` or ``height`` from the other, keeping the aspect ratio."""
    if width == 0:
        width = max(minimum, round(old_width * height / old_height))
    elif height == 0:
        height = max(minimum, round(old_height * width / old_width))
    return width, height


def scaled_size(old_width: int, old_height: int, scale_by: float) -> tuple[int, int]:
    if not math.isfinite(scale_by) or scale_by <= 0:
        raise NodeInputError(f"scale_by must be a positive number, got {scale_by}")
    return max(1, round(old_width * scale_by)), max(1, round(old_height * scale_by))
