"""The UNet as a denoiser ``D(x, sigma) -> x0`` in k-diffusion's (variance-exploding) convention.

ComfyUI's numerics (``BaseModel.apply_model`` with ``ModelSamplingDiscrete``):

1. ``x_in = x / sqrt(sigma² + 1)`` (EPS and v-prediction alike),
2. the UNet receives the *integer* timestep nearest to sigma in log-sigma, as float32,
3. ``eps``: ``x0 = x - out * sigma``; ``v_prediction``: ``x0 = x / (sigma² + 1) - out * sigma / sqrt(sigma² + 1)``.

The UNet runs in its own dtype on its device; everything around it (sigmas, x, x0) is float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nodes.sampling.schedulers import DiscreteSchedule
from nodes.sockets import LatentFormat

PREDICTIONS = ("eps", "v_prediction")


def process_latent_in(latent: torch.Tensor, latent_format: LatentFormat) -> torch.Tensor:
    """VAE latent → model space: ``(latent - shift) * scale``."""
    return (latent - latent_format.shift_factor) * latent_format.scale_factor


def process_latent_out(latent: torch.Tensor, latent_format: LatentFormat) -> torch.Tensor:
    """Model space → VAE latent: ``latent / scale + shift``."""
    return latent / latent_format.scale_factor + latent_format.shift_factor


def _sigma_view(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    if sigma.nelement() == 1:
        return sigma.view(())
    return sigma.view(sigma.shape[:1] + (1,) * (ndim - 1))


def noise_scaling(sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor, max_denoise: bool = False) -> torch.Tensor:
    """Noise a latent to level ``sigma``: ``latent + noise * sigma`` (``* sqrt(1 + sigma²)`` at full denoise)."""
    sigma = _sigma_view(sigma, noise.ndim)
    scaled = noise * torch.sqrt(1.0 + sigma**2.0) if max_denoise else noise * sigma
    return scaled + latent


@dataclass(frozen=True)
class ModelInputs:
    """The conditioning tensors of one batched UNet call (already repeated to the batch)."""

    context: torch.Tensor  # [N, tokens, dim] cross-attention states
    text_embeds: torch.Tensor | None = None  # [N, pooled_dim] (SDXL)
    time_ids: torch.Tensor | None = None  # [N, 5 | 6] (SDXL size / aesthetic conditioning)


class UNetDenoiser:
    """Wraps an active diffusers ``UNet2DConditionModel`` as ``apply(x, sigma, inputs) -> x0``."""

    def __init__(self, unet: Any, schedule: DiscreteSchedule, prediction: str = "eps"):
        if prediction not in PREDICTIONS:
            raise ValueError(f"unsupported prediction type {prediction!r}; expected one of {PREDICTIONS}")
        self.unet = unet
        self.schedule = schedule
        self.prediction = prediction
        self.device = torch.device(getattr(unet, "device", "cpu"))
        self.dtype = getattr(unet, "dtype", torch.float32)
        config = getattr(unet, "config", None)
        self.uses_text_time = getattr(config, "addition_embed_type", None) == "text_time"

    def time_id_count(self, pooled_dim: int) -> int:
        """How many SDXL size/aesthetic ids the UNet expects (6 for base, 5 for the refiner)."""
        config = self.unet.config
        return (config.projection_class_embeddings_input_dim - pooled_dim) // config.addition_time_embed_dim

    def apply(self, x: torch.Tensor, sigma: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
        """One UNet evaluation: x (float32, model space) at noise level sigma [N] → denoised x0."""
        sigma_b = _sigma_view(sigma, x.ndim)
        x_in = (x / (sigma_b**2 + 1.0) ** 0.5).to(self.dtype)
        timestep = self.schedule.timestep(sigma).float()
        kwargs: dict[str, Any] = {"encoder_hidden_states": inputs.context.to(self.device, self.dtype)}
        if self.uses_text_time:
            if inputs.text_embeds is None or inputs.time_ids is None:
                raise ValueError(
                    "this model needs SDXL pooled text embeddings; the conditioning has none "
                    "(encode the prompt with this model's CLIP)"
                )
            kwargs["added_cond_kwargs"] = {
                "text_embeds": inputs.text_embeds.to(self.device, self.dtype),
                "time_ids": inputs.time_ids.to(self.device),
            }
        output = self.unet(x_in, timestep.to(self.device), return_dict=False, **kwargs)[0].float()
        if self.prediction == "eps":
            return x - output * sigma_b
        return x / (sigma_b**2 + 1.0) - output * sigma_b / (sigma_b**2 + 1.0) ** 0.5


class InpaintDenoiser:
    """Keeps the unmasked region on the original latent (ComfyUI ``KSamplerX0Inpaint``).

    Before each evaluation the kept region of ``x`` is replaced by the original latent noised to the
    current sigma; after it, the kept region of the prediction is replaced by the original latent.
    ``mask`` is 1 where the sampler regenerates, already at the latent's shape (or None: no-op).
    """

    def __init__(self, inner: Any, latent: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None):
        self.inner = inner
        self.latent = latent
        self.noise = noise
        self.mask = mask

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return self.inner(x, sigma)
        keep = 1.0 - self.mask
        sigma_b = sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1))
        x = x * self.mask + noise_scaling(sigma_b, self.noise, self.latent) * keep
        out = self.inner(x, sigma)
        return out * self.mask + self.latent * keep
