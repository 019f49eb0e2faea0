"""Noise schedules: the model's discrete sigma table, and the schedulers that pick sampling sigmas from it.

Every scheduler returns a float32 CPU tensor of ``steps + 1`` descending sigmas ending in 0 (the
``normal``/``ddim_uniform`` schedulers may end at the model's smallest sigma instead when that sigma is
already ~0, as ComfyUI's do). The numbers follow ComfyUI's ``comfy/samplers.py`` and k-diffusion's
``get_sigmas_*`` so that the same model, scheduler and step count give the same sigmas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nodes.sampling.names import DISCARD_PENULTIMATE_SIGMA_SAMPLERS


def scaled_linear_sigmas(
    linear_start: float = 0.00085, linear_end: float = 0.012, timesteps: int = 1000
) -> torch.Tensor:
    """The SD1.x/SD2.x/SDXL discrete schedule: ``sigma_t = sqrt((1 - ᾱ_t) / ᾱ_t)``, float32 ascending.

    Betas are ComfyUI's "linear" beta schedule (squares of a linspace of square roots), in float64.
    """
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


class DiscreteSchedule:
    """A model's discrete noise schedule (ComfyUI ``ModelSamplingDiscrete``): sigma <-> timestep.

    ``sigmas`` is the ascending float32 table (index = UNet timestep). ``timestep(sigma)`` is the
    nearest table index in log-sigma (an integer, what the UNet receives); ``sigma(t)`` interpolates
    linearly in log-sigma between neighbouring indices.
    """

    def __init__(self, sigmas: torch.Tensor):
        sigmas = sigmas.detach().to("cpu")
        if sigmas.ndim != 1 or sigmas.numel() < 2:
            raise ValueError("a discrete schedule needs a 1-D table of at least two sigmas")
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.double().log().float()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Nearest table index (in log-sigma) for each sigma; integer tensor shaped like ``sigma``."""
        log_sigma = sigma.log()
        dists = log_sigma.to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a (fractional) timestep, interpolated in log-sigma."""
        t = torch.clamp(timestep.float().to("cpu"), min=0, max=len(self.sigmas) - 1)
        low = t.floor().long()
        high = t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        """The sigma ``percent`` of the way through sampling (0 → above the largest, 1 → 0)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0)).item()


# --- schedulers ------------------------------------------------------------------------------------


def simple_schedule(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """Evenly spaced table entries from the top (ComfyUI ``simple``)."""
    stride = len(schedule.sigmas) / steps
    sigmas = [float(schedule.sigmas[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.tensor([*sigmas, 0.0], dtype=torch.float32)


def ddim_uniform_schedule(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """Every ``len // steps``-th table entry starting at index 1, descending (ComfyUI ``ddim_uniform``)."""
    index = 1
    if math.isclose(float(schedule.sigmas[index]), 0, abs_tol=1e-5):
        steps += 1
        sigmas: list[float] = []
    else:
        sigmas = [0.0]
    stride = max(len(schedule.sigmas) // steps, 1)
    while index < len(schedule.sigmas):
        sigmas.append(float(schedule.sigmas[index]))
        index += stride
    return torch.tensor(sigmas[::-1], dtype=torch.float32)


def normal_schedule(schedule: DiscreteSchedule, steps: int, sgm: bool = False) -> torch.Tensor:
    """Timesteps evenly spaced from the largest to the smallest, sigmas interpolated in log-sigma.

    ``sgm=True`` (``sgm_uniform``) spaces ``steps + 1`` timesteps and drops the last.
    """
    start = schedule.timestep(schedule.sigma_max)
    end = schedule.timestep(schedule.sigma_min)
    append_zero = True
    if sgm:
        timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(schedule.sigma(end)), 0, abs_tol=1e-5):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(float(start), float(end), steps)
    sigmas = [float(schedule.sigma(t)) for t in timesteps]
    if append_zero:
        sigmas.append(0.0)
    return torch.tensor(sigmas, dtype=torch.float32)


def sgm_uniform_schedule(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    return normal_schedule(schedule, steps, sgm=True)


def karras_schedule(schedule: DiscreteSchedule, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022): ``(max^(1/rho) + ramp * (min^(1/rho) - max^(1/rho)))^rho``."""
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def exponential_schedule(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """Sigmas evenly spaced in log-sigma between the largest and smallest."""
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp()
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def beta_schedule(schedule: DiscreteSchedule, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at the quantiles of a Beta(0.6, 0.6) distribution (arXiv 2407.12173), duplicates dropped."""
    from scipy.stats import beta as beta_distribution

    total_timesteps = len(schedule.sigmas) - 1
    quantiles = 1 - np.linspace(0, 1, steps, endpoint=False)
    timesteps = np.rint(beta_distribution.ppf(quantiles, alpha, beta) * total_timesteps)
    sigmas: list[float] = []
    last = -1.0
    for t in timesteps:
        if t != last:
            sigmas.append(float(schedule.sigmas[int(t)]))
        last = t
    sigmas.append(0.0)
    return torch.tensor(sigmas, dtype=torch.float32)


def linear_quadratic_schedule(
    schedule: DiscreteSchedule, steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None
) -> torch.Tensor:
    """Linear then quadratic in "noise fraction", scaled by the largest sigma (Mochi's schedule)."""
    if steps == 1:
        fractions = [1.0, 0.0]
    else:
        if linear_steps is None:
            linear_steps = steps // 2
        linear_part = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quadratic_coef = step_diff / (linear_steps * quadratic_steps**2)
        linear_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps**2)
        const = quadratic_coef * (linear_steps**2)
        quadratic_part = [quadratic_coef * (i**2) + linear_coef * i + const for i in range(linear_steps, steps)]
        fractions = [1.0 - x for x in [*linear_part, *quadratic_part, 1.0]]
    return torch.tensor(fractions, dtype=torch.float32) * schedule.sigma_max


def kl_optimal_schedule(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """``tan`` of evenly spaced ``atan(sigma)`` between the largest and smallest sigma, then 0.

    For one step ComfyUI divides by zero (NaN sigmas); we start at the largest sigma instead.
    """
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    fractions = torch.arange(steps, dtype=torch.float32).div_(max(steps - 1, 1))
    sigmas = fractions.new_zeros(steps + 1)
    sigmas[:-1] = (fractions * math.atan(sigma_min) + (1 - fractions) * math.atan(sigma_max)).tan_()
    return sigmas


Scheduler = Callable[[DiscreteSchedule, int], torch.Tensor]

SCHEDULERS: dict[str, Scheduler] = {
    "simple": simple_schedule,
    "sgm_uniform": sgm_uniform_schedule,
    "karras": karras_schedule,
    "exponential": exponential_schedule,
    "ddim_uniform": ddim_uniform_schedule,
    "beta": beta_schedule,
    "normal": normal_schedule,
    "linear_quadratic": linear_quadratic_schedule,
    "kl_optimal": kl_optimal_schedule,
}
"""ComfyUI's scheduler names (in its order) → function(schedule, steps) -> sigmas."""


def calculate_sigmas(schedule: DiscreteSchedule, scheduler: str, steps: int) -> torch.Tensor:
    """The scheduler's sigmas for ``steps`` steps (length ``steps + 1``)."""
    try:
        function = SCHEDULERS[scheduler]
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {', '.join(SCHEDULERS)}") from None
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return function(schedule, steps)


# --- what KSampler / KSamplerAdvanced sample over -------------------------------------------------


def sampler_schedule(schedule: DiscreteSchedule, scheduler: str, sampler: str, steps: int) -> torch.Tensor:
    """Sigmas for a sampler: some samplers compute ``steps + 1`` sigmas and drop the penultimate one."""
    if sampler in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
        sigmas = calculate_sigmas(schedule, scheduler, steps + 1)
        return torch.cat([sigmas[:-2], sigmas[-1:]])
    return calculate_sigmas(schedule, scheduler, steps)


def denoise_schedule(
    schedule: DiscreteSchedule, scheduler: str, sampler: str, steps: int, denoise: float
) -> torch.Tensor:
    """KSampler's sigmas: the full schedule when ``denoise ≈ 1``; for ``0 < denoise < 1`` the last
    ``steps + 1`` sigmas of a schedule over ``int(steps / denoise)`` steps; empty for ``denoise <= 0``."""
    if denoise > 0.9999:
        return sampler_schedule(schedule, scheduler, sampler, steps)
    if denoise <= 0.0:
        return torch.zeros([0], dtype=torch.float32)
    full = sampler_schedule(schedule, scheduler, sampler, int(steps / denoise))
    return full[-(steps + 1) :]


@dataclass(frozen=True)
class StepWindow:
    """KSamplerAdvanced's step window over a full schedule."""

    start_at_step: int = 0
    end_at_step: int = 10000
    force_full_denoise: bool = True  # return_with_leftover_noise == "disable"


def window_schedule(sigmas: torch.Tensor, window: StepWindow) -> torch.Tensor | None:
    """Apply a step window to ``sigmas``; None means "nothing to sample, return the input latent".

    Truncate to ``sigmas[:end + 1]`` when ``end`` is inside the schedule (setting the last sigma to 0
    when fully denoising), then start at ``start`` if it leaves at least one step.
    """
    sigmas = sigmas.clone()
    if window.end_at_step < len(sigmas) - 1:
        sigmas = sigmas[: window.end_at_step + 1]
        if window.force_full_denoise:
            sigmas[-1] = 0
    if window.start_at_step < len(sigmas) - 1:
        return sigmas[window.start_at_step :]
    return None
