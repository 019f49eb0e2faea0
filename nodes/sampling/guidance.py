"""Classifier-free guidance over lists of conditionings, as ComfyUI computes it.

1. ``prepare_conds``: resolve masks to the latent size, encode each entry's model inputs (text
   embeddings; SDXL pooled embedding and size/aesthetic ids), and give every area conditioning an
   opposite (negative ↔ positive) entry with the same area when none exists.
2. ``calc_cond_batch``: run every entry on its area crop, batching entries whose shapes allow it into
   one UNet call, and average the outputs per pixel weighted by ``strength × mask`` (areas without a
   mask get an 8-latent-pixel feathered edge).
3. ``CFGDenoiser``: ``uncond + (cond - uncond) × cfg``; the negative is not evaluated at all when
   ``cfg == 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from nodes.sampling.denoiser import ModelInputs, UNetDenoiser
from nodes.sockets import Conditioning, ConditioningEntry

POSITIVE, NEGATIVE = 0, 1


@dataclass(frozen=True, eq=False)
class PreparedCond:
    """One conditioning ready for the sampler loop (ComfyUI's processed cond dict)."""

    inputs: ModelInputs  # batch-1 tensors on the model's device
    area: tuple[int, int, int, int] | None = None  # (height, width, y, x) in latent pixels
    strength: float = 1.0
    mask: torch.Tensor | None = None  # [B, h, w] at the latent's size
    mask_strength: float = 1.0


# --- preparation ----------------------------------------------------------------------------------


def _resize_mask(mask: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    mask = mask.to(device=device, dtype=torch.float32)
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim == 4:  # [B, 1, h, w]
        mask = mask[:, 0]
    if tuple(mask.shape[1:]) != (height, width):
        mask = F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False).squeeze(1)
    return mask


def _time_ids(entry: ConditioningEntry, count: int, latent_shape: Sequence[int], negative: bool) -> torch.Tensor:
    extras = entry.extras
    width = extras.get("width", latent_shape[3] * 8)
    height = extras.get("height", latent_shape[2] * 8)
    crop_w = extras.get("crop_w", 0)
    crop_h = extras.get("crop_h", 0)
    if count == 5:  # SDXL refiner: size, crop, aesthetic score
        aesthetic = extras.get("aesthetic_score", 2.5 if negative else 6.0)
        ids = [height, width, crop_h, crop_w, aesthetic]
    else:
        target_width = extras.get("target_width", width)
        target_height = extras.get("target_height", height)
        ids = [height, width, crop_h, crop_w, target_height, target_width]
    return torch.tensor([ids], dtype=torch.float32)


def _encode(
    entry: ConditioningEntry, denoiser: UNetDenoiser, latent_shape: Sequence[int], negative: bool
) -> ModelInputs:
    device = denoiser.device
    context = entry.embeds.to(device)
    if context.ndim == 2:
        context = context.unsqueeze(0)
    expected = getattr(getattr(denoiser.unet, "config", None), "cross_attention_dim", None)
    if isinstance(expected, int) and context.shape[-1] != expected:
        raise ValueError(
            f"the conditioning holds {context.shape[-1]}-wide text embeddings but this model expects "
            f"{expected}-wide ones: encode the prompt with the CLIP of the same checkpoint family"
        )
    if not denoiser.uses_text_time:
        return ModelInputs(context=context)
    if entry.pooled is None:
        raise ValueError("SDXL models need the pooled text embedding; this conditioning has none")
    pooled = entry.pooled.reshape(1, -1).float()
    ids = _time_ids(entry, denoiser.time_id_count(pooled.shape[-1]), latent_shape, negative)
    return ModelInputs(context=context, text_embeds=pooled.to(device), time_ids=ids.to(device))


def _check_area(area: tuple[int, int, int, int] | None, height: int, width: int) -> None:
    if area is None:
        return
    h, w, y, x = (int(v) for v in area)
    if h <= 0 or w <= 0 or y < 0 or x < 0 or y >= height or x >= width:
        raise ValueError(
            f"conditioning area (height={h}, width={w}, y={y}, x={x}, in latent pixels) lies outside "
            f"the {height}x{width} latent"
        )


def _area_inside(inner: tuple[int, ...], outer: tuple[int, ...]) -> bool:
    half = len(inner) // 2
    for i in range(half):
        if inner[half + i] < outer[half + i]:
            return False
    for i in range(half):
        if inner[i] + inner[half + i] > outer[i] + outer[half + i]:
            return False
    return True


def _add_same_area_opposite(opposite: list[PreparedCond], cond: PreparedCond) -> None:
    """Give ``cond``'s area a counterpart in ``opposite`` (the smallest covering entry's inputs)."""
    if cond.area is None:
        return
    smallest: PreparedCond | None = None
    for other in opposite:
        if other.area is not None:
            if _area_inside(cond.area, other.area):
                if smallest is None or smallest.area is None:
                    smallest = other
                elif smallest.area[0] * smallest.area[1] > other.area[0] * other.area[1]:
                    smallest = other
        elif smallest is None:
            smallest = other
    if smallest is None:
        return
    if smallest.area is not None and tuple(smallest.area) == tuple(cond.area):
        return
    opposite.append(replace(cond, inputs=smallest.inputs))


def prepare_conds(
    positive: Conditioning, negative: Conditioning, denoiser: UNetDenoiser, latent_shape: Sequence[int]
) -> tuple[list[PreparedCond], list[PreparedCond]]:
    """Positive and negative conditionings ready for ``calc_cond_batch`` on a latent of ``latent_shape``."""
    height, width = int(latent_shape[2]), int(latent_shape[3])
    groups: list[list[PreparedCond]] = []
    for index, conditioning in enumerate((positive, negative)):
        prepared = []
        for entry in conditioning.entries:
            _check_area(entry.area, height, width)
            mask = None if entry.mask is None else _resize_mask(entry.mask, height, width, denoiser.device)
            prepared.append(
                PreparedCond(
                    inputs=_encode(entry, denoiser, latent_shape, negative=index == NEGATIVE),
                    area=None if entry.area is None else tuple(int(v) for v in entry.area),
                    strength=float(entry.strength),
                    mask=mask,
                    mask_strength=float(entry.extras.get("mask_strength", 1.0)),
                )
            )
        groups.append(prepared)
    for index, group in enumerate(groups):
        for cond in list(group):
            for other_index, other in enumerate(groups):
                if other_index != index:
                    _add_same_area_opposite(other, cond)
    return groups[POSITIVE], groups[NEGATIVE]


# --- evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Job:
    input_x: torch.Tensor
    mult: torch.Tensor
    inputs: ModelInputs
    area: list[int] | None
    group: int


def _area_and_mult(cond: PreparedCond, x: torch.Tensor, group: int) -> _Job:
    dims = tuple(x.shape[2:])
    area = None if cond.area is None else list(cond.area)
    input_x = x
    if area is not None:
        for i in range(len(dims)):
            area[i] = min(input_x.shape[i + 2] - area[len(dims) + i], area[i])
            input_x = input_x.narrow(i + 2, area[len(dims) + i], area[i])
    if cond.mask is not None:
        mask = cond.mask[: input_x.shape[0]]
        if area is not None:
            for i in range(len(dims)):
                mask = mask.narrow(i + 1, area[len(dims) + i], area[i])
        mask = mask * cond.mask_strength
        mask = mask.unsqueeze(1).repeat((input_x.shape[0] // mask.shape[0], input_x.shape[1]) + (1,) * (mask.ndim - 1))
    else:
        mask = torch.ones_like(input_x)
    mult = mask * cond.strength
    if cond.mask is None and area is not None:
        fuzz = 8
        for i in range(len(dims)):
            feather = min(fuzz, mult.shape[2 + i] // 4)
            if area[len(dims) + i] != 0:
                for t in range(feather):
                    mult.narrow(i + 2, t, 1).mul_((1.0 / feather) * (t + 1))
            if area[i] + area[len(dims) + i] < x.shape[i + 2]:
                for t in range(feather):
                    mult.narrow(i + 2, area[i] - 1 - t, 1).mul_((1.0 / feather) * (t + 1))
    return _Job(input_x=input_x, mult=mult, inputs=cond.inputs, area=area, group=group)


def _repeat_to_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.shape[0] > batch:
        return tensor[:batch]
    if tensor.shape[0] < batch:
        repeats = math.ceil(batch / tensor.shape[0])
        return tensor.repeat([repeats] + [1] * (tensor.ndim - 1))[:batch]
    return tensor


def _contexts_concatenable(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape == b.shape:
        return True
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        return False
    return math.lcm(a.shape[1], b.shape[1]) // min(a.shape[1], b.shape[1]) <= 4


def _can_batch(a: _Job, b: _Job) -> bool:
    if a.input_x.shape != b.input_x.shape:
        return False
    if not _contexts_concatenable(a.inputs.context, b.inputs.context):
        return False
    for name in ("text_embeds", "time_ids"):
        ta, tb = getattr(a.inputs, name), getattr(b.inputs, name)
        if (ta is None) != (tb is None) or (ta is not None and ta.shape != tb.shape):
            return False
    return True


def _batched_inputs(jobs: Sequence[_Job], batch: int) -> ModelInputs:
    contexts = [_repeat_to_batch(job.inputs.context, batch) for job in jobs]
    length = 1
    for context in contexts:
        length = math.lcm(length, context.shape[1])
    # Repeating tokens leaves cross-attention unchanged; it lets prompts of 77 and 154 tokens batch.
    contexts = [c.repeat(1, length // c.shape[1], 1) if c.shape[1] < length else c for c in contexts]
    text_embeds = time_ids = None
    if jobs[0].inputs.text_embeds is not None:
        text_embeds = torch.cat([_repeat_to_batch(job.inputs.text_embeds, batch) for job in jobs])
        time_ids = torch.cat([_repeat_to_batch(job.inputs.time_ids, batch) for job in jobs])
    return ModelInputs(context=torch.cat(contexts), text_embeds=text_embeds, time_ids=time_ids)


def calc_cond_batch(
    denoiser: UNetDenoiser,
    groups: Sequence[Sequence[PreparedCond] | None],
    x: torch.Tensor,
    sigma: torch.Tensor,
) -> list[torch.Tensor]:
    """The weighted-average denoised prediction of each group of conditionings (None → zeros)."""
    outputs = [torch.zeros_like(x) for _ in groups]
    counts = [torch.ones_like(x) * 1e-37 for _ in groups]
    to_run: list[_Job] = []
    for group_index, group in enumerate(groups):
        if group is None:
            continue
        to_run.extend(_area_and_mult(cond, x, group_index) for cond in group)

    while to_run:
        first = to_run[0]
        batchable = [i for i, job in enumerate(to_run) if _can_batch(job, first)]
        batchable.reverse()  # popped from the end so earlier indices stay valid
        jobs = [to_run.pop(i) for i in batchable]
        batch = x.shape[0]
        input_x = torch.cat([job.input_x for job in jobs])
        sigma_batch = torch.cat([sigma] * len(jobs))
        denoised = denoiser.apply(input_x, sigma_batch, _batched_inputs(jobs, batch)).chunk(len(jobs))
        for job, out in zip(jobs, denoised):
            target, count = outputs[job.group], counts[job.group]
            if job.area is not None:
                dims = len(job.area) // 2
                for i in range(dims):
                    target = target.narrow(i + 2, job.area[i + dims], job.area[i])
                    count = count.narrow(i + 2, job.area[i + dims], job.area[i])
            target += out * job.mult
            count += job.mult

    for output, count in zip(outputs, counts):
        output /= count
    return outputs


class CFGDenoiser:
    """``D(x, sigma)`` with classifier-free guidance over prepared positive/negative conditionings."""

    def __init__(self, denoiser: UNetDenoiser, positive: list[PreparedCond], negative: list[PreparedCond], cfg: float):
        self.denoiser = denoiser
        self.positive = positive
        self.negative = negative
        self.cfg = float(cfg)
        self.keep_uncond = False  # CFG++ samplers: evaluate the negative even at cfg 1
        self.last_uncond: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        skip_negative = math.isclose(self.cfg, 1.0) and not self.keep_uncond
        cond, uncond = calc_cond_batch(self.denoiser, [self.positive, None if skip_negative else self.negative], x, sigma)
        self.last_uncond = uncond
        return uncond + (cond - uncond) * self.cfg
