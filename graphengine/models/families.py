"""Model families (SD1.x, SD2.x, SDXL, SDXL refiner): their static settings, read from ``data/families.json``.

Also the discrete noise schedule every one of them was trained with (ComfyUI's ModelSamplingDiscrete:
1000 steps, "scaled_linear" betas from 0.00085 to 0.012).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nodes.sockets import LatentFormat

FAMILIES_FILE = Path(__file__).resolve().parent / "data" / "families.json"

NUM_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


@dataclass(frozen=True)
class TextEncoderRole:
    role: str  # clip_l, clip_h, clip_g
    prefix: str  # key prefix in a single-file checkpoint
    layout: str  # hf_clip | open_clip
    model_class: str  # CLIPTextModel | CLIPTextModelWithProjection
    hidden_act: str
    tokenizer: str  # clip_l | clip_g (graphengine.models.tokenizers)
    default_layer: int  # hidden layer ComfyUI encodes from by default (-1 last, -2 penultimate)


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    prediction: str
    attention_rule: str  # heads | head_channels
    attention_value: int
    upcast_attention: bool
    sample_size: int
    latent_format: LatentFormat
    text_encoders: tuple[TextEncoderRole, ...]

    def attention_head_dim(self, block_out_channels: list[int]) -> int | list[int]:
        """diffusers' ``attention_head_dim`` (which, for these UNets, means the number of heads)."""
        if self.attention_rule == "heads":
            return self.attention_value
        return [max(1, c // self.attention_value) for c in block_out_channels]


def _family(name: str, raw: dict[str, Any]) -> Family:
    fmt = raw["latent_format"]
    return Family(
        name=name,
        label=raw["label"],
        prediction=raw["prediction"],
        attention_rule=raw["attention"]["rule"],
        attention_value=int(raw["attention"]["value"]),
        upcast_attention=bool(raw["upcast_attention"]),
        sample_size=int(raw["sample_size"]),
        latent_format=LatentFormat(
            channels=fmt["channels"],
            scale_factor=fmt["scale_factor"],
            shift_factor=fmt["shift_factor"],
            latent_rgb_factors=tuple(tuple(row) for row in fmt["latent_rgb_factors"]),
            latent_rgb_bias=tuple(fmt["latent_rgb_bias"]) if fmt["latent_rgb_bias"] else None,
        ),
        text_encoders=tuple(
            TextEncoderRole(
                role=te["role"],
                prefix=te["prefix"],
                layout=te["layout"],
                model_class=te["class"],
                hidden_act=te["hidden_act"],
                tokenizer=te["tokenizer"],
                default_layer=int(te["default_layer"]),
            )
            for te in raw["text_encoders"]
        ),
    )


@cache
def families() -> dict[str, Family]:
    """Family name → ``Family`` (immutable; read once from the shipped JSON)."""
    raw = json.loads(FAMILIES_FILE.read_text(encoding="utf-8"))
    return {name: _family(name, spec) for name, spec in raw.items() if not name.startswith("_")}


def family(name: str) -> Family:
    table = families()
    if name not in table:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(table)}")
    return table[name]


def discrete_sigmas() -> Any:
    """``float32 [1000]`` ascending sigmas of the scaled-linear schedule, computed in float64 as ComfyUI does."""
    import torch

    betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, NUM_TIMESTEPS, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()
