"""Typed values that travel on node edges (ComfyUI's LATENT, IMAGE, MASK, CONDITIONING, MODEL, CLIP, VAE).

Small frozen dataclasses with documented shapes, never ``{"samples": t}`` dicts; conversion to
ComfyUI's wire shapes happens only at the boundary (history outputs, ``.latent`` files).

Importing this module does not import torch (annotations are strings), so loading node packs keeps
server start-up fast; the tensors themselves are torch tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch


class EdgeValue:
    """Base of the socket values: pydantic checks them by ``isinstance`` only, so node fields keep the
    very object passed in and no torch annotation needs resolving (the pack modules stay torch-free)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)


@dataclass(frozen=True, eq=False)
class Latent(EdgeValue):
    """A batch of latents in the VAE's raw latent space (not multiplied by the scale factor).

    ``samples``: float32 ``[B, C, H/8, W/8]`` on the CPU between nodes.
    ``noise_mask``: optional ``[B|1, 1, h, w]`` in [0, 1] (1 = regenerate); any resolution, resized
    to the latent by the sampler.
    ``batch_index``: optional per-sample seed offsets (ComfyUI ``batch_index``).
    """

    socket_type: ClassVar[str] = "LATENT"
    samples: torch.Tensor
    noise_mask: torch.Tensor | None = None
    batch_index: tuple[int, ...] | None = None


@dataclass(frozen=True, eq=False)
class Image(EdgeValue):
    """A batch of RGB images: float32 ``[B, H, W, 3]`` in [0, 1] on the CPU (ComfyUI's layout)."""

    socket_type: ClassVar[str] = "IMAGE"
    pixels: torch.Tensor


@dataclass(frozen=True, eq=False)
class Mask(EdgeValue):
    """A batch of masks: float32 ``[B, H, W]`` in [0, 1] on the CPU."""

    socket_type: ClassVar[str] = "MASK"
    values: torch.Tensor


@dataclass(frozen=True, eq=False)
class ConditioningEntry:
    """One conditioning: text embeddings plus how to apply them.

    ``embeds``: ``[1, tokens, dim]`` (tokens a multiple of 77). ``pooled``: ``[1, dim]`` or None
    (SDXL's pooled text embedding). ``area``: ``(height, width, y, x)`` in latent units (pixels / 8)
    or None for the whole image. ``extras``: SDXL size conditioning (``width``, ``height``,
    ``crop_w``, ``crop_h``, ``target_width``, ``target_height``, ``aesthetic_score``) and similar keys.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    area: tuple[int, int, int, int] | None = None
    strength: float = 1.0
    mask: torch.Tensor | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Conditioning(EdgeValue):
    """A list of conditionings, combined by the sampler (ComfyUI's CONDITIONING)."""

    socket_type: ClassVar[str] = "CONDITIONING"
    entries: tuple[ConditioningEntry, ...]

    def __iter__(self) -> Iterator[ConditioningEntry]:
        return iter(self.entries)


@dataclass(frozen=True)
class LatentFormat:
    """How a model family's latents relate to the VAE: ``model_in = (latent - shift) * scale``."""

    channels: int = 4
    scale_factor: float = 0.18215
    shift_factor: float = 0.0
    latent_rgb_factors: tuple[tuple[float, float, float], ...] | None = None  # [channels][rgb]
    latent_rgb_bias: tuple[float, float, float] | None = None


@dataclass(frozen=True, eq=False)
class ModelSampling:
    """The model's discrete noise schedule (ComfyUI ModelSamplingDiscrete).

    ``sigmas``: float32 ``[num_timesteps]`` ascending, ``sigma_t = sqrt((1 - ᾱ_t) / ᾱ_t)``.
    ``prediction``: "eps" or "v_prediction".
    """

    sigmas: torch.Tensor
    prediction: str = "eps"


class ActiveModel(Protocol):
    """A model ready to run: on its execution device, in its dtype, with patches (LoRA) applied."""

    device: torch.device
    dtype: torch.dtype


class ModelRuntime(Protocol):
    """Provided by the model manager: moves a model to its device and applies patches while active."""

    def activate(self, value: Any) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True, eq=False)
class Model(EdgeValue):
    """A denoising UNet (ComfyUI's MODEL).

    ``unet`` is a diffusers ``UNet2DConditionModel`` (its forward takes ``sample``, ``timestep``,
    ``encoder_hidden_states`` and, for SDXL, ``added_cond_kwargs``). Use ``with model.activate() as
    unet:`` to get it on the device with LoRA patches applied; never mutate ``unet`` otherwise.
    """

    socket_type: ClassVar[str] = "MODEL"
    unet: Any
    sampling: ModelSampling
    latent_format: LatentFormat
    arch: str  # "sd15", "sd2", "sd2_v", "sdxl", "sdxl_refiner", "micro", …
    runtime: ModelRuntime
    patches: tuple[Any, ...] = ()  # LoRA patches, applied by the runtime while active
    identity: str = ""  # stable description of file + patches (logging, cache keys)

    def activate(self) -> AbstractContextManager[Any]:
        return self.runtime.activate(self)


@dataclass(frozen=True, eq=False)
class Clip(EdgeValue):
    """Text encoder(s) and tokenizer(s) (ComfyUI's CLIP). SDXL carries two encoders.

    ``encoders``: tuple of transformers ``CLIPTextModel`` / ``CLIPTextModelWithProjection``;
    ``tokenizers``: matching ``CLIPTokenizer``s; ``skip_layers``: CLIPSetLastLayer's value (-1 = last).
    """

    socket_type: ClassVar[str] = "CLIP"
    encoders: tuple[Any, ...]
    tokenizers: tuple[Any, ...]
    arch: str
    runtime: ModelRuntime
    skip_layers: int = -1
    patches: tuple[Any, ...] = ()
    embedding_dirs: tuple[str, ...] = ()
    identity: str = ""

    def activate(self) -> AbstractContextManager[Any]:
        return self.runtime.activate(self)


@dataclass(frozen=True, eq=False)
class Vae(EdgeValue):
    """An autoencoder (ComfyUI's VAE): a diffusers ``AutoencoderKL``."""

    socket_type: ClassVar[str] = "VAE"
    autoencoder: Any
    latent_format: LatentFormat
    runtime: ModelRuntime
    identity: str = ""

    def activate(self) -> AbstractContextManager[Any]:
        return self.runtime.activate(self)
