"""Recognise a Stable Diffusion checkpoint from its tensor names and shapes, and derive diffusers configs.

Works on ``{name: shape}`` (a safetensors header), so nothing is loaded to decide. Steps:

1. find the UNet (``model.diffusion_model.`` or bare ``input_blocks…`` keys) and read its LDM
   parameters from shapes: model channels, channel multipliers, res blocks per level, transformer
   depth per level, cross-attention width, linear projections, ``label_emb`` (SDXL's ADM input);
2. pick the family from the text encoders present (``cond_stage_model.transformer`` → SD1,
   ``cond_stage_model.model`` → SD2, ``conditioner.embedders.0.transformer`` + ``.1.model`` → SDXL,
   ``conditioner.embedders.0.model`` alone → SDXL refiner), or, for a UNet-only file, from the
   cross-attention width and ADM input (768 → SD1, 1024 → SD2, ADM + 1280 → refiner, ADM → SDXL);
3. read the VAE and text encoder sizes (layers, widths, MLP widths, projection) from shapes;
4. prediction type: an explicit marker wins (a ``v_pred`` tensor, or ``modelspec.prediction_type``
   / ``graphengine.prediction`` metadata); otherwise SD2 checkpoints use ComfyUI's rule (v-prediction
   when the standard deviation of ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` exceeds
   0.09 — true of SD2.x 768-v, false of 512-base), and everything else is eps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphengine.models.families import Family, TextEncoderRole, family

Shapes = Mapping[str, tuple[int, ...]]

UNET_PREFIXES = ("model.diffusion_model.", "")
VAE_PREFIXES = ("first_stage_model.", "vae.", "")
V_PRED_PROBE = "output_blocks.11.1.transformer_blocks.0.norm1.bias"
V_PRED_STD_THRESHOLD = 0.09

OTHER_ARCH_MARKERS = {
    "joint_blocks.": "Stable Diffusion 3",
    "double_blocks.": "Flux",
    "transformer_blocks.0.attn.add_q_proj": "a DiT (SD3/Flux-style) transformer",
    "input_hint_block.": "a ControlNet",
    "down_blocks.0.resnets.0.conv1.weight": None,  # diffusers-format UNet: handled separately
}


class UnsupportedModel(ValueError):
    """The tensors are not a model graphengine can load; the message says what was found."""


@dataclass(frozen=True)
class TextEncoderSpec:
    role: TextEncoderRole
    vocab: int
    width: int
    layers: int
    mlp: int
    positions: int
    projection: int | None

    def transformers_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "vocab_size": self.vocab,
            "hidden_size": self.width,
            "intermediate_size": self.mlp,
            "num_hidden_layers": self.layers,
            "num_attention_heads": max(1, self.width // 64),
            "max_position_embeddings": self.positions,
            "hidden_act": self.role.hidden_act,
            "layer_norm_eps": 1e-5,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 1,
        }
        if self.projection is not None:
            config["projection_dim"] = self.projection
        return config


@dataclass(frozen=True)
class DetectedModel:
    family: Family
    unet_prefix: str | None
    unet: dict[str, Any] | None  # LDM UNet parameters
    vae_prefix: str | None
    vae: dict[str, Any] | None  # LDM autoencoder parameters
    text_encoders: tuple[TextEncoderSpec, ...]
    prediction: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def arch(self) -> str:
        return self.family.name


def _count(shapes: Shapes, pattern: str) -> int:
    """1 + the largest N captured by ``pattern`` (a regex with one group) over the keys, or 0."""
    regex = re.compile(pattern)
    best = -1
    for key in shapes:
        match = regex.match(key)
        if match:
            best = max(best, int(match.group(1)))
    return best + 1


def find_unet_prefix(shapes: Shapes) -> str | None:
    for prefix in UNET_PREFIXES:
        if prefix + "input_blocks.0.0.weight" in shapes:
            return prefix
    return None


def _shape_reader(shapes: Shapes, prefix: str, part: str) -> Callable[[str], tuple[int, ...]]:
    """``shape(key)``: the shape of tensor ``prefix + key``, or UnsupportedModel naming the missing tensor."""

    def shape(key: str) -> tuple[int, ...]:
        value = shapes.get(prefix + key)
        if value is None:
            raise UnsupportedModel(f"{part} tensor {prefix + key!r} is missing")
        return value

    return shape


def unet_params(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """LDM UNet parameters read from tensor shapes (see ``ldm_layout.unet_layout`` for the inverse)."""

    shape = _shape_reader(shapes, prefix, "UNet")

    conv_in = shape("input_blocks.0.0.weight")
    mc, in_channels = conv_in[0], conv_in[1]
    esc = re.escape(prefix)
    blocks = _count(shapes, esc + r"input_blocks\.(\d+)\.")
    levels: list[list[tuple[int, int]]] = [[]]
    for index in range(1, blocks):
        if prefix + f"input_blocks.{index}.0.op.weight" in shapes:
            levels.append([])
            continue
        out = shape(f"input_blocks.{index}.0.out_layers.3.weight")[0]
        depth = _count(shapes, esc + rf"input_blocks\.{index}\.1\.transformer_blocks\.(\d+)\.")
        levels[-1].append((out, depth))
    if not levels[-1] or any(not level for level in levels):
        raise UnsupportedModel("UNet input blocks do not follow the Stable Diffusion layout")
    res_counts = {len(level) for level in levels}
    if len(res_counts) != 1:
        raise UnsupportedModel(f"UNet levels have different numbers of res blocks: {sorted(res_counts)}")
    context = None
    linear = False
    for key, value in shapes.items():
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight"):
            context = value[1]
        if key.startswith(prefix) and key.endswith(".proj_in.weight"):
            linear = len(value) == 2
    adm = shapes.get(prefix + "label_emb.0.0.weight")
    return {
        "in_channels": in_channels,
        "out_channels": shape("out.2.weight")[0],
        "model_channels": mc,
        "channel_mult": [level[0][0] // mc for level in levels],
        "num_res_blocks": res_counts.pop(),
        "transformer_depth": [level[0][1] for level in levels],
        "transformer_depth_middle": _count(shapes, esc + r"middle_block\.1\.transformer_blocks\.(\d+)\."),
        "context_dim": context,
        "use_linear_in_transformer": linear,
        "adm_in_channels": adm[1] if adm else None,
    }


def find_vae_prefix(shapes: Shapes) -> str | None:
    for prefix in VAE_PREFIXES:
        if prefix + "encoder.down.0.block.0.conv1.weight" in shapes and prefix + "decoder.conv_in.weight" in shapes:
            return prefix
    return None


def vae_params(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """LDM autoencoder parameters read from tensor shapes."""
    esc = re.escape(prefix)

    shape = _shape_reader(shapes, prefix, "VAE")

    conv_in = shape("encoder.conv_in.weight")
    ch = conv_in[0]
    levels = _count(shapes, esc + r"encoder\.down\.(\d+)\.")
    if levels == 0:
        raise UnsupportedModel("VAE encoder has no down blocks")
    return {
        "in_channels": conv_in[1],
        "out_ch": shape("decoder.conv_out.weight")[0],
        "ch": ch,
        "ch_mult": [shape(f"encoder.down.{i}.block.0.conv1.weight")[0] // ch for i in range(levels)],
        "num_res_blocks": _count(shapes, esc + r"encoder\.down\.0\.block\.(\d+)\."),
        "z_channels": shape("decoder.conv_in.weight")[1],
    }


@dataclass(frozen=True)
class _TextEncoderKeys:
    """Where one text-encoder layout keeps the tensors ``text_encoder_spec`` reads (after the prefix)."""

    token_embedding: str
    layers: str  # a regex whose group 1 is the layer index
    first_mlp: str
    position_embedding: str
    projection: str
    projection_width_axis: int  # the projection tensor's axis that holds the projected width


_HF_CLIP_KEYS = _TextEncoderKeys(
    token_embedding="text_model.embeddings.token_embedding.weight",
    layers=r"text_model\.encoder\.layers\.(\d+)\.",
    first_mlp="text_model.encoder.layers.0.mlp.fc1.weight",
    position_embedding="text_model.embeddings.position_embedding.weight",
    projection="text_projection.weight",
    projection_width_axis=0,
)
_OPEN_CLIP_KEYS = _TextEncoderKeys(
    token_embedding="token_embedding.weight",
    layers=r"transformer\.resblocks\.(\d+)\.",
    first_mlp="transformer.resblocks.0.mlp.c_fc.weight",
    position_embedding="positional_embedding",
    projection="text_projection",
    projection_width_axis=1,
)


def text_encoder_spec(shapes: Shapes, role: TextEncoderRole) -> TextEncoderSpec | None:
    """The size of one text encoder, or None if its tensors are absent."""
    p = role.prefix
    keys = _HF_CLIP_KEYS if role.layout == "hf_clip" else _OPEN_CLIP_KEYS
    token = shapes.get(p + keys.token_embedding)
    if token is None:
        return None
    projection = shapes.get(p + keys.projection)
    return TextEncoderSpec(
        role=role,
        vocab=token[0],
        width=token[1],
        layers=_count(shapes, re.escape(p) + keys.layers),
        mlp=shapes[p + keys.first_mlp][0],
        positions=shapes[p + keys.position_embedding][0],
        projection=projection[keys.projection_width_axis] if projection else None,
    )


def family_from_text_encoders(shapes: Shapes) -> str | None:
    if "conditioner.embedders.1.model.ln_final.weight" in shapes:
        return "sdxl"
    if "conditioner.embedders.0.model.ln_final.weight" in shapes:
        return "sdxl_refiner"
    if "cond_stage_model.model.ln_final.weight" in shapes:
        return "sd2"
    if "cond_stage_model.transformer.text_model.final_layer_norm.weight" in shapes:
        return "sd15"
    return None


def family_from_unet(unet: Mapping[str, Any]) -> str:
    context, adm = unet["context_dim"], unet["adm_in_channels"]
    if adm:
        return "sdxl_refiner" if context == 1280 else "sdxl"
    if context == 1024 or (context != 768 and unet["use_linear_in_transformer"]):
        return "sd2"
    return "sd15"


def _describe_foreign(shapes: Shapes) -> str:
    for marker, name in OTHER_ARCH_MARKERS.items():
        if name and any(marker in key for key in shapes):
            return f"it looks like {name}, which graphengine does not load"
    sample = ", ".join(sorted(shapes)[:3])
    return f"no Stable Diffusion UNet tensors (model.diffusion_model.input_blocks…) were found; first keys: {sample or '(none)'}"


def detect(
    shapes: Shapes,
    metadata: Mapping[str, str] | None = None,
    tensor: Callable[[str], Any] | None = None,
    *,
    require: tuple[str, ...] = ("unet", "vae", "text"),
) -> DetectedModel:
    """Recognise a checkpoint. ``tensor(name)`` fetches one tensor (for the SD2 v-prediction rule).

    ``require`` names the parts the caller needs (``unet``, ``vae``, ``text``); a missing one raises
    ``UnsupportedModel`` with the reason.
    """
    metadata = metadata or {}
    notes: list[str] = []
    unet_prefix = find_unet_prefix(shapes)
    unet = unet_params(shapes, unet_prefix) if unet_prefix is not None else None
    if unet is None and "unet" in require:
        raise UnsupportedModel(_describe_foreign(shapes))
    name = family_from_text_encoders(shapes) or (family_from_unet(unet) if unet else None)
    if name is None:
        name = "sd15"
    fam = family(name)
    if unet is not None:
        if unet["in_channels"] != fam.latent_format.channels:
            raise UnsupportedModel(
                f"the UNet takes {unet['in_channels']} input channels (an inpainting or other special model); "
                f"only {fam.latent_format.channels}-channel text-to-image models are supported"
            )
        if unet["context_dim"] is None:
            raise UnsupportedModel("the UNet has no cross-attention layers")
    vae_prefix = find_vae_prefix(shapes)
    vae = vae_params(shapes, vae_prefix) if vae_prefix is not None else None
    if vae is None and "vae" in require:
        raise UnsupportedModel("the checkpoint holds no VAE (first_stage_model.*) tensors")
    encoders = tuple(spec for role in fam.text_encoders if (spec := text_encoder_spec(shapes, role)) is not None)
    if "text" in require and len(encoders) != len(fam.text_encoders):
        raise UnsupportedModel(f"the {fam.label} checkpoint is missing text encoder tensors ({fam.text_encoders[0].prefix}…)")
    if unet is not None and encoders:
        width = sum(e.width for e in encoders)
        if unet["context_dim"] != width:
            raise UnsupportedModel(
                f"the UNet expects {unet['context_dim']}-wide text embeddings but the text encoder(s) give {width}"
            )
    prediction = _prediction(shapes, metadata, fam, unet_prefix, tensor, notes)
    return DetectedModel(fam, unet_prefix, unet, vae_prefix, vae, encoders, prediction, tuple(notes))


def _prediction(
    shapes: Shapes,
    metadata: Mapping[str, str],
    fam: Family,
    unet_prefix: str | None,
    tensor: Callable[[str], Any] | None,
    notes: list[str],
) -> str:
    declared = (metadata.get("graphengine.prediction") or metadata.get("modelspec.prediction_type") or "").lower()
    if declared in ("v", "v_prediction", "v-prediction"):
        notes.append("v-prediction declared in the file's metadata")
        return "v_prediction"
    if declared in ("eps", "epsilon"):
        return "eps"
    if "v_pred" in shapes:
        notes.append("v-prediction marked by a v_pred tensor")
        return "v_prediction"
    if fam.name == "sd2" and unet_prefix is not None and tensor is not None:
        probe = unet_prefix + V_PRED_PROBE
        if probe in shapes:
            std = float(tensor(probe).float().std(unbiased=False))
            if std > V_PRED_STD_THRESHOLD:
                notes.append(f"v-prediction inferred (std of {V_PRED_PROBE} = {std:.3f} > {V_PRED_STD_THRESHOLD})")
                return "v_prediction"
    return fam.prediction


def unet_diffusers_config(detected: DetectedModel) -> dict[str, Any]:
    """``UNet2DConditionModel`` config for the detected UNet."""
    p = detected.unet
    assert p is not None
    fam = detected.family
    mc = p["model_channels"]
    block_out = [mc * m for m in p["channel_mult"]]
    depths = p["transformer_depth"]
    down = ["CrossAttnDownBlock2D" if d > 0 else "DownBlock2D" for d in depths]
    up = ["CrossAttnUpBlock2D" if d > 0 else "UpBlock2D" for d in reversed(depths)]
    layers = [max(d, 1) for d in depths]
    middle = max(p["transformer_depth_middle"], 1)
    if down[-1] == "DownBlock2D":
        layers[-1] = middle  # diffusers takes the mid block's depth from the last entry
    elif layers[-1] != middle:
        raise UnsupportedModel("the UNet's middle transformer depth differs from its deepest level's")
    attention_depths = {d for d in depths if d > 0} | {middle}
    # One depth everywhere (SD1, SD2, refiner) → an int; blocks without attention ignore the value.
    transformer_layers: int | list[int] = attention_depths.pop() if len(attention_depths) == 1 else layers
    config: dict[str, Any] = {
        "sample_size": fam.sample_size,
        "in_channels": p["in_channels"],
        "out_channels": p["out_channels"],
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": block_out,
        "layers_per_block": p["num_res_blocks"],
        "cross_attention_dim": p["context_dim"],
        "attention_head_dim": fam.attention_head_dim(block_out),
        "use_linear_projection": p["use_linear_in_transformer"],
        "transformer_layers_per_block": transformer_layers,
        "upcast_attention": fam.upcast_attention,
    }
    if p["adm_in_channels"]:
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=p["adm_in_channels"],
        )
    return config


def vae_diffusers_config(vae: Mapping[str, Any], scaling_factor: float) -> dict[str, Any]:
    """``AutoencoderKL`` config for detected LDM autoencoder parameters."""
    levels = len(vae["ch_mult"])
    return {
        "in_channels": vae["in_channels"],
        "out_channels": vae["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [vae["ch"] * m for m in vae["ch_mult"]],
        "layers_per_block": vae["num_res_blocks"],
        "latent_channels": vae["z_channels"],
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": scaling_factor,
    }
