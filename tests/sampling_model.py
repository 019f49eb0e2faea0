"""Tiny random-weight diffusers UNets and a minimal ModelRuntime for the sampling tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from nodes.sampling.schedulers import scaled_linear_sigmas
from nodes.sockets import Conditioning, ConditioningEntry, LatentFormat, Model, ModelSampling

CONTEXT_DIM = 32
SD15_RGB_FACTORS = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))


class CallRecorder:
    """Records each UNet call's sample, timestep and keyword tensors (a forward pre-hook)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, module: Any, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        self.calls.append({"sample": sample.detach().clone(), "timestep": timestep.detach().clone(), **kwargs})


@dataclass
class TinyRuntime:
    """ModelRuntime: yields the UNet as is (CPU, float32) and counts activations."""

    activations: int = 0

    @contextlib.contextmanager
    def activate(self, value: Any) -> Iterator[Any]:
        self.activations += 1
        yield value.unet


def tiny_unet(seed: int = 0, sdxl: bool = False, time_ids: int = 6) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    extra: dict[str, Any] = {}
    if sdxl:
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 16 + time_ids * 8,
        }
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CONTEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
        **extra,
    ).eval()


def tiny_model(unet: Any = None, prediction: str = "eps", rgb_factors: bool = True, arch: str = "micro") -> Model:
    unet = unet if unet is not None else tiny_unet()
    latent_format = LatentFormat(latent_rgb_factors=SD15_RGB_FACTORS if rgb_factors else None)
    return Model(
        unet=unet,
        sampling=ModelSampling(sigmas=scaled_linear_sigmas(), prediction=prediction),
        latent_format=latent_format,
        arch=arch,
        runtime=TinyRuntime(),
    )


def text(seed: int, tokens: int = 77, pooled: bool = False, **entry: Any) -> Conditioning:
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(1, tokens, CONTEXT_DIM, generator=generator)
    pooled_embeds = torch.randn(1, 16, generator=generator) if pooled else None
    return Conditioning((ConditioningEntry(embeds=embeds, pooled=pooled_embeds, **entry),))


def combine(*conditionings: Conditioning) -> Conditioning:
    return Conditioning(tuple(e for c in conditionings for e in c.entries))


@dataclass
class RecordingContext:
    """Enough of NodeContext for sampling: records progress; interrupts at a chosen step."""

    env: Any = None
    interrupt_at: int | None = None
    progress_calls: list[tuple[int, int, Any]] = field(default_factory=list)
    node_id: str = "3"
    prompt_id: str = "p"

    def progress(self, value: int, total: int, preview: Any = None) -> None:
        from graphengine.errors import Interrupted

        self.progress_calls.append((value, total, preview))
        if self.interrupt_at is not None and value >= self.interrupt_at:
            raise Interrupted("interrupted")

    def check_interrupted(self) -> None:
        pass
