"""KSampler's pipeline: latent + conditionings + settings → sampled latent, with ComfyUI's numerics.

1. Fix the latent's channels (an all-zero latent is repeated to the model's channel count).
2. Draw the initial noise on the CPU from the seed (or zeros when noise is disabled).
3. Compute sigmas: scheduler × steps × denoise (KSampler) or the step window (KSamplerAdvanced).
4. On the model's device: scale a non-zero latent into model space, prepare the conditionings,
   noise the latent to ``sigmas[0]``, and run the sampler with CFG and the inpainting mask.
5. Report progress (and a latent2rgb preview) once per step; scale the result back out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nodes.sampling.denoiser import InpaintDenoiser, UNetDenoiser, noise_scaling, process_latent_in, process_latent_out
from nodes.sampling.guidance import CFGDenoiser, prepare_conds
from nodes.sampling.names import unsupported_sampler_message, unsupported_scheduler_message
from nodes.sampling.noise import initial_noise, inpaint_noise, zero_noise
from nodes.sampling.preview import LatentPreview, make_previewer
from nodes.sampling.samplers import SAMPLERS, SamplerRun
from nodes.sampling.schedulers import DiscreteSchedule, StepWindow, denoise_schedule, sampler_schedule, window_schedule
from nodes.sockets import Conditioning, Latent, Model

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, LatentPreview | None], None]


@dataclass(frozen=True)
class SamplingSettings:
    """Everything KSampler/KSamplerAdvanced decide about one sampling run."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    add_noise: bool = True
    window: StepWindow | None = None  # KSamplerAdvanced only

    def check(self) -> None:
        for message in (unsupported_sampler_message(self.sampler_name), unsupported_scheduler_message(self.scheduler)):
            if message:
                raise ValueError(message)
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not math.isfinite(self.cfg):
            raise ValueError("cfg must be a finite number")


@dataclass(frozen=True)
class PreviewOptions:
    method: str = "none"
    max_size: int | None = 512


def fix_empty_latent_channels(samples: torch.Tensor, channels: int) -> torch.Tensor:
    """An all-zero latent with the wrong channel count is repeated to the model's channel count."""
    if samples.shape[1] != channels and torch.count_nonzero(samples) == 0:
        repeats = math.ceil(channels / samples.shape[1])
        samples = samples.repeat([1, repeats] + [1] * (samples.ndim - 2))[:, :channels]
    return samples


def prepare_mask(mask: torch.Tensor, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """A noise mask resized (bilinear) to the latent and repeated over channels and batch."""
    mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).float()
    mask = F.interpolate(mask, size=(shape[2], shape[3]), mode="bilinear")
    mask = torch.cat([mask] * shape[1], dim=1)
    if mask.shape[0] > shape[0]:
        mask = mask[: shape[0]]
    elif mask.shape[0] < shape[0]:
        mask = mask.repeat([math.ceil(shape[0] / mask.shape[0]), 1, 1, 1])[: shape[0]]
    return mask.to(device)


def sampling_sigmas(schedule: DiscreteSchedule, settings: SamplingSettings) -> torch.Tensor | None:
    """The sigmas to sample over; None when the step window leaves nothing to do."""
    if settings.window is None:
        return denoise_schedule(schedule, settings.scheduler, settings.sampler_name, settings.steps, settings.denoise)
    full = sampler_schedule(schedule, settings.scheduler, settings.sampler_name, settings.steps)
    return window_schedule(full, settings.window)


def _is_full_denoise(schedule: DiscreteSchedule, sigmas: torch.Tensor) -> bool:
    max_sigma = float(schedule.sigma_max)
    sigma = float(sigmas[0])
    return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma


def sample_latent(
    model: Model,
    positive: Conditioning,
    negative: Conditioning,
    latent: Latent,
    settings: SamplingSettings,
    progress: ProgressFn | None = None,
    preview: PreviewOptions = PreviewOptions(),
) -> Latent:
    """Run one KSampler: returns a new Latent (noise_mask and batch_index kept from the input)."""
    settings.check()
    spec = SAMPLERS[settings.sampler_name]
    samples = fix_empty_latent_channels(latent.samples.float().cpu(), model.latent_format.channels)
    shape = samples.shape

    # 1-2. Initial noise, on the CPU, from the seed.
    if settings.add_noise:
        noise = initial_noise(shape, settings.seed, latent.batch_index)
    else:
        noise = zero_noise(shape)

    # 3. Sigmas.
    schedule = DiscreteSchedule(model.sampling.sigmas)
    sigmas = sampling_sigmas(schedule, settings)
    if sigmas is None or sigmas.shape[-1] == 0:
        return Latent(samples=samples, noise_mask=latent.noise_mask, batch_index=latent.batch_index)

    previewer = make_previewer(preview.method, model.latent_format)
    total_steps = len(sigmas) - 1

    def on_step(step: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        if progress is None:
            return
        image = None
        if previewer is not None:
            image = LatentPreview(image=previewer(denoised), format="JPEG", max_size=preview.max_size)
        progress(min(step + 1, total_steps), total_steps, image)  # dpm_adaptive may take more steps

    # 4. Sample on the model's device.
    with model.activate() as unet, torch.no_grad():
        denoiser = UNetDenoiser(unet, schedule, model.sampling.prediction)
        device = denoiser.device
        latent_in = samples.to(device=device, dtype=torch.float32)
        if torch.count_nonzero(latent_in) > 0:  # an empty latent is not shifted
            latent_in = process_latent_in(latent_in, model.latent_format)
        noise = noise.to(device=device, dtype=torch.float32)
        sigmas = sigmas.to(device)
        mask = None if latent.noise_mask is None else prepare_mask(latent.noise_mask, shape, device)

        cond, uncond = prepare_conds(positive, negative, denoiser, shape)
        guided = CFGDenoiser(denoiser, cond, uncond, settings.cfg)
        kept_noise = inpaint_noise(shape, settings.seed).to(device) if spec.random_inpaint_noise else noise
        model_fn = InpaintDenoiser(guided, latent_in, kept_noise, mask)

        x = noise_scaling(sigmas[0], noise, latent_in, _is_full_denoise(schedule, sigmas))
        logger.debug(
            "sampling %s/%s: %d steps, sigma %.4f → %.4f, cfg %s, shape %s on %s",
            settings.sampler_name, settings.scheduler, total_steps, float(sigmas[0]), float(sigmas[-1]),
            settings.cfg, tuple(shape), device,
        )
        run = SamplerRun(seed=settings.seed, callback=on_step, guidance=guided, schedule=schedule)
        result = spec.function(model_fn, x, sigmas, run)
        out = process_latent_out(result.float(), model.latent_format).cpu()

    # 5. Output keeps the mask and batch indices, as ComfyUI's latent copy does.
    return Latent(samples=out, noise_mask=latent.noise_mask, batch_index=latent.batch_index)
