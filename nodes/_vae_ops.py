"""VAE encode/decode with ComfyUI's conventions, batched to fit memory, tiled when memory is short.

Conventions (ComfyUI's IMAGE and LATENT):

* images are ``[B, H, W, 3]`` float32 in [0, 1]; the autoencoder sees ``[B, 3, H, W]`` in [-1, 1];
* latents are the autoencoder's raw latent space: ``encode`` returns the posterior's mode (no
  sampling, no scale factor), ``decode`` takes latents as they are; the sampler applies
  ``LatentFormat`` on its side;
* images whose sides are not multiples of the VAE's downscale (8) are centre-cropped before encoding.

Batches are split by an estimate of the memory they need (free GPU memory, or available RAM on the
CPU). If the GPU still runs out of memory, decoding (and encoding) retries tile by tile, halving the
tile down to a minimum before giving up with a clear error; ``tile=`` forces tiling. A
half-precision VAE that overflows (NaN/inf out, as SDXL's VAE does in float16) is re-run in float32
for that call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from graphengine.errors import NodeInputError

logger = logging.getLogger(__name__)

DECODE_TILE = 64  # latent cells (512 pixels) per tile side when decoding tiled
ENCODE_TILE = 512  # pixels per tile side when encoding tiled
MIN_DECODE_TILE = 16
# Activation memory per latent cell (decode) and per pixel (encode), in elements, for SD's VAE.
DECODE_ELEMENTS_PER_CELL = 2178 * 64
ENCODE_ELEMENTS_PER_PIXEL = 1767

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
Step = Callable[[], None]


class VaeError(NodeInputError):
    """Input the VAE cannot process (wrong shape, wrong channel count, too small, …)."""


def downscale(autoencoder: torch.nn.Module) -> int:
    """Pixels per latent cell along each side (8 for SD VAEs)."""
    return 2 ** (len(autoencoder.config.block_out_channels) - 1)


def latent_channels(autoencoder: torch.nn.Module) -> int:
    return int(autoencoder.config.latent_channels)


def _placement(autoencoder: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(autoencoder.parameters())
    return parameter.device, parameter.dtype


# --------------------------------------------------------------------------------------------------
# decode
# --------------------------------------------------------------------------------------------------


def decode(
    autoencoder: torch.nn.Module, latents: torch.Tensor, *, tile: int | None = None, step: Step | None = None
) -> torch.Tensor:
    """Latents ``[B, C, h, w]`` → images ``[B, 8h, 8w, 3]`` float32 in [0, 1] on the CPU.

    ``tile``: decode in tiles of this many latent cells per side (None: whole, tiled only on OOM).
    ``step``: called between batches/tiles (e.g. to honour an interrupt).
    """
    check_latents(autoencoder, latents)
    pixels = _in_safe_precision(autoencoder, lambda: _decode_once(autoencoder, latents, tile, step), "decoding")
    return ((pixels + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1).contiguous()


def _decode_once(autoencoder: torch.nn.Module, latents: torch.Tensor, tile: int | None, step: Step | None) -> torch.Tensor:
    """Decoded pixels ``[B, 3, H, W]`` in [-1, 1] (float32, CPU): batched to fit, tiled on OOM."""
    device, dtype = _placement(autoencoder)
    if tile is not None:
        return _decode_tiled(autoencoder, latents, tile, step)
    try:
        per_item = DECODE_ELEMENTS_PER_CELL * latents.shape[2] * latents.shape[3] * _dtype_size(dtype)
        pieces = []
        for batch in latents.split(_batch_size(latents.shape[0], per_item, device)):
            if step is not None:
                step()
            with torch.no_grad():
                pieces.append(autoencoder.decode(batch.to(device=device, dtype=dtype)).sample.float().cpu())
        return torch.cat(pieces)
    except _OOM:
        _release_cuda()
        logger.warning("out of memory while decoding %s latents; retrying tiled", tuple(latents.shape))
        return _retry_tiled(lambda t: _decode_tiled(autoencoder, latents, t, step), DECODE_TILE, MIN_DECODE_TILE)


def check_latents(autoencoder: torch.nn.Module, latents: torch.Tensor) -> None:
    if latents.ndim != 4:
        raise VaeError(f"latent must be [batch, channels, height, width]; got shape {tuple(latents.shape)}")
    channels = latent_channels(autoencoder)
    if latents.shape[1] != channels:
        raise VaeError(
            f"latent has {latents.shape[1]} channels but this VAE decodes {channels}-channel latents "
            "(is the latent from a different model family?)"
        )
    if latents.shape[0] == 0 or latents.shape[2] == 0 or latents.shape[3] == 0:
        raise VaeError(f"latent is empty: shape {tuple(latents.shape)}")


def _decode_tiled(autoencoder: torch.nn.Module, latents: torch.Tensor, tile: int, step: Step | None) -> torch.Tensor:
    device, dtype = _placement(autoencoder)
    ratio = downscale(autoencoder)

    def run(part: torch.Tensor) -> torch.Tensor:
        if step is not None:
            step()
        with torch.no_grad():
            return autoencoder.decode(part.to(device=device, dtype=dtype)).sample.float().cpu()

    return tiled(run, latents, tile=tile, overlap=max(1, tile // 4), scale=ratio)


# --------------------------------------------------------------------------------------------------
# encode
# --------------------------------------------------------------------------------------------------


def encode(
    autoencoder: torch.nn.Module, pixels: torch.Tensor, *, tile: int | None = None, step: Step | None = None
) -> torch.Tensor:
    """Images ``[B, H, W, C≥3]`` in [0, 1] → raw latents ``[B, C, H/8, W/8]`` float32 on the CPU.

    Only the first three channels are used; sides are centre-cropped to multiples of 8.
    """
    ratio = downscale(autoencoder)
    pixels = crop_to_multiple(check_image(pixels, ratio), ratio)
    x = (pixels[..., :3].movedim(-1, 1) * 2.0 - 1.0).contiguous()
    return _in_safe_precision(autoencoder, lambda: _encode_once(autoencoder, x, tile, step), "encoding")


def _encode_once(autoencoder: torch.nn.Module, x: torch.Tensor, tile: int | None, step: Step | None) -> torch.Tensor:
    """Latents of ``x`` (``[B, 3, H, W]`` in [-1, 1]): batched to fit, tiled on OOM."""
    ratio = downscale(autoencoder)
    device, dtype = _placement(autoencoder)

    def run(part: torch.Tensor) -> torch.Tensor:
        if step is not None:
            step()
        with torch.no_grad():
            return autoencoder.encode(part.to(device=device, dtype=dtype)).latent_dist.mode().float().cpu()

    if tile is not None:
        return tiled(run, x, tile=tile, overlap=max(ratio, tile // 4), scale=1 / ratio)
    try:
        per_item = ENCODE_ELEMENTS_PER_PIXEL * x.shape[2] * x.shape[3] * _dtype_size(dtype)
        return torch.cat([run(batch) for batch in x.split(_batch_size(x.shape[0], per_item, device))])
    except _OOM:
        _release_cuda()
        logger.warning("out of memory while encoding %s pixels; retrying tiled", tuple(x.shape))
        return _retry_tiled(
            lambda t: tiled(run, x, tile=t, overlap=t // 4, scale=1 / ratio), ENCODE_TILE, MIN_DECODE_TILE * ratio
        )


def _in_safe_precision(autoencoder: torch.nn.Module, work: Callable[[], torch.Tensor], what: str) -> torch.Tensor:
    """Run ``work``; if a half-precision VAE overflowed (NaN/inf, as SDXL's VAE does in float16),
    run it again with the autoencoder temporarily in float32 (fp16 → fp32 → fp16 is exact)."""
    result = work()
    if torch.isfinite(result).all():
        return result
    _, dtype = _placement(autoencoder)
    if dtype == torch.float32:
        raise VaeError(f"the VAE produced NaN or infinite values while {what} (are the weights or inputs corrupt?)")
    logger.warning("the %s VAE overflowed while %s; retrying in float32", str(dtype).removeprefix("torch."), what)
    autoencoder.to(torch.float32)
    try:
        result = work()
    finally:
        autoencoder.to(dtype)
    if not torch.isfinite(result).all():
        raise VaeError(f"the VAE produced NaN or infinite values while {what}, even in float32")
    return result


def check_image(pixels: torch.Tensor, ratio: int = 8) -> torch.Tensor:
    if pixels.ndim != 4:
        raise VaeError(f"image must be [batch, height, width, channels]; got shape {tuple(pixels.shape)}")
    if pixels.shape[-1] < 3:
        raise VaeError(f"image has {pixels.shape[-1]} channel(s); the VAE needs RGB (3 channels)")
    if pixels.shape[0] == 0:
        raise VaeError("image batch is empty")
    if pixels.shape[1] < ratio or pixels.shape[2] < ratio:
        raise VaeError(
            f"image is {pixels.shape[2]}×{pixels.shape[1]} pixels; the VAE needs at least {ratio}×{ratio}"
        )
    return pixels


def crop_to_multiple(pixels: torch.Tensor, ratio: int) -> torch.Tensor:
    """Centre-crop ``[B, H, W, C]`` so both sides are multiples of ``ratio`` (ComfyUI's offsets)."""
    height, width = pixels.shape[1], pixels.shape[2]
    cropped_h, cropped_w = height // ratio * ratio, width // ratio * ratio
    if (cropped_h, cropped_w) == (height, width):
        return pixels
    top, left = (height % ratio) // 2, (width % ratio) // 2
    return pixels[:, top : top + cropped_h, left : left + cropped_w, :]


# --------------------------------------------------------------------------------------------------
# inpainting input
# --------------------------------------------------------------------------------------------------


def inpaint_inputs(pixels: torch.Tensor, mask: torch.Tensor, grow_by: int, ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's VAEEncodeForInpaint preparation.

    Returns (pixels to encode, noise mask): the mask is resized (bilinear) to the image, both are
    centre-cropped to multiples of ``ratio``, pixels where the rounded mask is 1 become 0.5 grey, and
    the noise mask is the rounded mask grown by ``grow_by`` pixels (a box dilation), ``[B, 1, H, W]``.
    """
    check_image(pixels, ratio)
    if mask.ndim not in (2, 3):
        raise VaeError(f"mask must be [batch, height, width]; got shape {tuple(mask.shape)}")
    masks = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    if masks.shape[0] not in (1, pixels.shape[0]):
        raise VaeError(f"mask batch ({masks.shape[0]}) must be 1 or match the image batch ({pixels.shape[0]})")
    height, width = pixels.shape[1], pixels.shape[2]
    masks = F.interpolate(masks, size=(height, width), mode="bilinear")
    cropped_h, cropped_w = height // ratio * ratio, width // ratio * ratio
    top, left = (height % ratio) // 2, (width % ratio) // 2
    pixels = pixels[:, top : top + cropped_h, left : left + cropped_w, :3].clone()
    masks = masks[:, :, top : top + cropped_h, left : left + cropped_w]

    hard = masks.round()
    if grow_by == 0:
        grown = masks
    else:
        kernel = torch.ones((1, 1, grow_by, grow_by))
        grown = F.conv2d(hard, kernel, padding=math.ceil((grow_by - 1) / 2)).clamp(0.0, 1.0)
    keep = (1.0 - hard).squeeze(1).unsqueeze(-1)  # [B, H, W, 1]
    pixels = (pixels - 0.5) * keep + 0.5
    return pixels, grown[:, :, :cropped_h, :cropped_w].round()


# --------------------------------------------------------------------------------------------------
# tiling and memory
# --------------------------------------------------------------------------------------------------


def tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int, overlap: int, scale: float
) -> torch.Tensor:
    """Apply ``fn`` (input ``[B, C, H, W]`` → output scaled by ``scale`` spatially) tile by tile and
    blend the overlaps with linear ramps, so tile edges do not show."""
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than its overlap ({overlap})")
    height, width = x.shape[2], x.shape[3]
    out: torch.Tensor | None = None
    total: torch.Tensor | None = None
    for top in _starts(height, tile, overlap):
        for left in _starts(width, tile, overlap):
            part = fn(x[:, :, top : top + tile, left : left + tile])
            if out is None:
                out_h, out_w = round(height * scale), round(width * scale)
                out = torch.zeros((part.shape[0], part.shape[1], out_h, out_w), dtype=part.dtype)
                total = torch.zeros((1, 1, out_h, out_w), dtype=part.dtype)
            y0, x0 = round(top * scale), round(left * scale)
            feather = max(1, round(overlap * scale))
            ramp_y = _ramp(part.shape[2], feather, top > 0, top + tile < height)
            ramp_x = _ramp(part.shape[3], feather, left > 0, left + tile < width)
            weight = ramp_y[:, None] * ramp_x[None, :]
            out[:, :, y0 : y0 + part.shape[2], x0 : x0 + part.shape[3]] += part * weight
            total[:, :, y0 : y0 + part.shape[2], x0 : x0 + part.shape[3]] += weight  # type: ignore[index]
    assert out is not None and total is not None
    return out / total


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def _ramp(length: int, feather: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    ramp = torch.ones(length)
    edge = torch.arange(1, min(feather, length) + 1, dtype=torch.float32) / (feather + 1)
    if fade_in:
        ramp[: edge.numel()] = torch.minimum(ramp[: edge.numel()], edge)
    if fade_out:
        ramp[-edge.numel() :] = torch.minimum(ramp[-edge.numel() :], edge.flip(0))
    return ramp


def _retry_tiled(attempt: Callable[[int], torch.Tensor], tile: int, minimum: int) -> torch.Tensor:
    while True:
        try:
            return attempt(tile)
        except _OOM as exc:
            _release_cuda()
            if tile // 2 < minimum:
                raise _OOM(f"the VAE ran out of GPU memory even in tiles of {tile} ({exc})") from exc
            tile //= 2
            logger.warning("still out of memory; retrying with tiles of %d", tile)


def _batch_size(total: int, bytes_per_item: int, device: torch.device) -> int:
    """How many items to run at once: as many as ~80% of the device's free memory holds (all of them
    when the free memory is unknown)."""
    free = _free_memory(device)
    if free is None:
        return total
    return max(1, min(total, int(free * 0.8) // max(1, bytes_per_item)))


def _free_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None


def _dtype_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _release_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
