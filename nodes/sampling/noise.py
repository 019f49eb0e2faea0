"""Seeded noise, drawn exactly as ComfyUI draws it so the same seed gives the same image.

* Initial noise: ``torch.randn`` on a CPU generator seeded with the seed, float32, the latent's shape
  in one call; with ``batch_index``, one ``[1, C, H, W]`` draw per index up to the largest, picked.
* Per-step noise of ancestral samplers: a generator on the latent's device seeded with the seed
  (plus one on the CPU, as current ComfyUI does so that it differs from the initial noise; see
  ``CPU_STEP_SEED_OFFSET``).
* SDE samplers: a torchsde Brownian tree on the CPU, seeded with the seed, queried per interval.
* ``ddim``'s inpainting noise: a CPU generator seeded with seed + 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

SEED_MASK = 0xFFFF_FFFF_FFFF_FFFF

CPU_STEP_SEED_OFFSET = 1
"""Per-step noise on the CPU uses seed + 1, as ComfyUI does since PR #11528 (Dec 2025). ComfyUI
v0.3.64 used the seed itself, so on CPU the first ancestral noise repeated the initial noise (issue
#9819: over-noisy CPU images). On CUDA both versions use the seed itself on the device generator."""

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``noise(sigma, sigma_next)`` → a standard-normal tensor shaped like the latent."""


def _generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed & SEED_MASK)  # ComfyUI would overflow past 2**64 - 1; we wrap instead
    return generator


def initial_noise(shape: Sequence[int], seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """The starting noise for a latent of ``shape`` (float32, CPU)."""
    generator = _generator(seed)
    if batch_index is None:
        return torch.randn(list(shape), dtype=torch.float32, generator=generator, device="cpu")
    indices = [int(i) for i in batch_index]
    if not indices or min(indices) < 0:
        raise ValueError("batch_index must list non-negative integers")
    per_sample_shape = [1, *list(shape)[1:]]
    draws = [
        torch.randn(per_sample_shape, dtype=torch.float32, generator=generator, device="cpu")
        for _ in range(max(indices) + 1)
    ]
    return torch.cat([draws[i] for i in indices], dim=0)


def zero_noise(shape: Sequence[int]) -> torch.Tensor:
    """KSamplerAdvanced with ``add_noise: disable``."""
    return torch.zeros(list(shape), dtype=torch.float32)


def inpaint_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """``ddim``'s noise for the kept (unmasked) region: a CPU generator seeded with seed + 1."""
    return torch.randn(list(shape), generator=_generator(seed + 1), device="cpu")


def step_noise_sampler(x: torch.Tensor, seed: int | None) -> NoiseSampler:
    """Per-step noise for ancestral samplers, drawn on ``x``'s device from a seeded generator."""
    if seed is None:
        generator = None
    else:
        generator = _generator(seed + CPU_STEP_SEED_OFFSET if x.device.type == "cpu" else seed, x.device)
    shape, dtype, device = x.size(), x.dtype, x.device

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, dtype=dtype, device=device, generator=generator)

    return sample


class BrownianTreeNoise:
    """Noise for SDE samplers from a torchsde Brownian tree over ``[sigma_min, sigma_max]``.

    ``noise(s, s_next)`` is the Brownian increment between the two sigmas divided by
    ``sqrt(|s_next - s|)``: standard normal, and consistent across step sizes (same seed, finer
    steps → the same underlying path). ``on_cpu`` selects the ``*_gpu`` variants' device tree.
    """

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor, seed: int | None, on_cpu: bool):
        import torchsde

        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self._sign = 1
        if not t0 < t1:
            t0, t1, self._sign = t1, t0, -1
        w0 = torch.zeros_like(x)
        if on_cpu:
            t0, w0, t1 = t0.detach().cpu(), w0.detach().cpu(), t1.detach().cpu()
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, ()).item())
        self._on_cpu = on_cpu
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Should have")
            self._tree = torchsde.BrownianTree(t0, w0, t1, entropy=seed)

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        sign = 1
        lo, hi = (t0, t1) if t0 < t1 else (t1, t0)
        if not t0 < t1:
            sign = -1
        device, dtype = lo.device, lo.dtype
        if self._on_cpu:
            lo, hi = lo.detach().cpu().float(), hi.detach().cpu().float()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Should have")
            w = self._tree(lo, hi)
        w = w.to(device=device, dtype=dtype) * (self._sign * sign)
        return w / (t1 - t0).abs().sqrt()
