"""The tensor names and shapes of a single-file (LDM / "original") Stable Diffusion checkpoint.

Given an architecture description (``data/checkpoint_archs.json``), list every tensor such a file
holds, in the layout the original training code writes and users download:

- ``model.diffusion_model.*``: the openaimodel UNet (``input_blocks`` / ``middle_block`` /
  ``output_blocks``, ResBlocks with ``in_layers``/``emb_layers``/``out_layers``, SpatialTransformers);
- ``first_stage_model.*``: the KL autoencoder (``encoder.down.N.block.M``, ``mid.attn_1``, …);
- text encoders: transformers CLIP layout (``…transformer.text_model.*``) or the OpenCLIP text tower
  (``…model.transformer.resblocks.N.attn.in_proj_weight`` …), under the prefix the arch gives.

No torch here: shapes are tuples. ``checkpoint_maker`` fills them with seeded random numbers; the
loader's tests use them as synthetic key sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

Shape = tuple[int, ...]
ARCHS_FILE = Path(__file__).resolve().parent / "data" / "checkpoint_archs.json"

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


@cache
def _arch_table_text() -> str:
    return ARCHS_FILE.read_text(encoding="utf-8")


def checkpoint_archs() -> dict[str, dict[str, Any]]:
    """Arch name → description (a fresh copy each call)."""
    table = json.loads(_arch_table_text())
    return {name: spec for name, spec in table.items() if not name.startswith("_")}


def arch_spec(arch: str) -> dict[str, Any]:
    archs = checkpoint_archs()
    if arch not in archs:
        raise ValueError(f"unknown checkpoint architecture {arch!r}; choose one of {', '.join(archs)}")
    return archs[arch]


# --- building blocks ---


def _conv(name: str, cout: int, cin: int, k: int) -> Iterator[tuple[str, Shape]]:
    yield f"{name}.weight", (cout, cin, k, k)
    yield f"{name}.bias", (cout,)


def _linear(name: str, cout: int, cin: int, bias: bool = True) -> Iterator[tuple[str, Shape]]:
    yield f"{name}.weight", (cout, cin)
    if bias:
        yield f"{name}.bias", (cout,)


def _norm(name: str, channels: int) -> Iterator[tuple[str, Shape]]:
    yield f"{name}.weight", (channels,)
    yield f"{name}.bias", (channels,)


def _unet_resblock(name: str, cin: int, cout: int, emb: int) -> Iterator[tuple[str, Shape]]:
    yield from _norm(f"{name}.in_layers.0", cin)
    yield from _conv(f"{name}.in_layers.2", cout, cin, 3)
    yield from _linear(f"{name}.emb_layers.1", cout, emb)
    yield from _norm(f"{name}.out_layers.0", cout)
    yield from _conv(f"{name}.out_layers.3", cout, cout, 3)
    if cin != cout:
        yield from _conv(f"{name}.skip_connection", cout, cin, 1)


def _spatial_transformer(name: str, ch: int, depth: int, context: int, linear: bool) -> Iterator[tuple[str, Shape]]:
    yield from _norm(f"{name}.norm", ch)
    proj = (ch, ch) if linear else (ch, ch, 1, 1)
    yield f"{name}.proj_in.weight", proj
    yield f"{name}.proj_in.bias", (ch,)
    for d in range(depth):
        block = f"{name}.transformer_blocks.{d}"
        for q_k_v in ("to_q", "to_k", "to_v"):
            yield from _linear(f"{block}.attn1.{q_k_v}", ch, ch, bias=False)
        yield from _linear(f"{block}.attn1.to_out.0", ch, ch)
        yield from _linear(f"{block}.ff.net.0.proj", ch * 8, ch)
        yield from _linear(f"{block}.ff.net.2", ch, ch * 4)
        yield from _linear(f"{block}.attn2.to_q", ch, ch, bias=False)
        yield from _linear(f"{block}.attn2.to_k", ch, context, bias=False)
        yield from _linear(f"{block}.attn2.to_v", ch, context, bias=False)
        yield from _linear(f"{block}.attn2.to_out.0", ch, ch)
        for norm in ("norm1", "norm2", "norm3"):
            yield from _norm(f"{block}.{norm}", ch)
    yield f"{name}.proj_out.weight", proj
    yield f"{name}.proj_out.bias", (ch,)


def unet_layout(p: Mapping[str, Any]) -> Iterator[tuple[str, Shape]]:
    """openaimodel.UNetModel tensors (without the ``model.diffusion_model.`` prefix)."""
    mc = p["model_channels"]
    emb = mc * 4
    levels = len(p["channel_mult"])
    depths = p["transformer_depth"]
    ctx, linear = p["context_dim"], p["use_linear_in_transformer"]
    yield from _linear("time_embed.0", emb, mc)
    yield from _linear("time_embed.2", emb, emb)
    if p.get("adm_in_channels"):
        yield from _linear("label_emb.0.0", emb, p["adm_in_channels"])
        yield from _linear("label_emb.0.2", emb, emb)
    yield from _conv("input_blocks.0.0", mc, p["in_channels"], 3)
    skips = [mc]
    ch, index = mc, 1
    for level, mult in enumerate(p["channel_mult"]):
        for _ in range(p["num_res_blocks"]):
            yield from _unet_resblock(f"input_blocks.{index}.0", ch, mult * mc, emb)
            ch = mult * mc
            if depths[level] > 0:
                yield from _spatial_transformer(f"input_blocks.{index}.1", ch, depths[level], ctx, linear)
            skips.append(ch)
            index += 1
        if level != levels - 1:
            yield f"input_blocks.{index}.0.op.weight", (ch, ch, 3, 3)
            yield f"input_blocks.{index}.0.op.bias", (ch,)
            skips.append(ch)
            index += 1
    yield from _unet_resblock("middle_block.0", ch, ch, emb)
    yield from _spatial_transformer("middle_block.1", ch, p["transformer_depth_middle"], ctx, linear)
    yield from _unet_resblock("middle_block.2", ch, ch, emb)
    index = 0
    for level in reversed(range(levels)):
        mult = p["channel_mult"][level]
        for block in range(p["num_res_blocks"] + 1):
            skip = skips.pop()
            yield from _unet_resblock(f"output_blocks.{index}.0", ch + skip, mult * mc, emb)
            ch = mult * mc
            sub = 1
            if depths[level] > 0:
                yield from _spatial_transformer(f"output_blocks.{index}.1", ch, depths[level], ctx, linear)
                sub = 2
            if level and block == p["num_res_blocks"]:
                yield from _conv(f"output_blocks.{index}.{sub}.conv", ch, ch, 3)
            index += 1
    yield from _norm("out.0", mc)
    yield from _conv("out.2", p["out_channels"], mc, 3)


def _vae_resblock(name: str, cin: int, cout: int) -> Iterator[tuple[str, Shape]]:
    yield from _norm(f"{name}.norm1", cin)
    yield from _conv(f"{name}.conv1", cout, cin, 3)
    yield from _norm(f"{name}.norm2", cout)
    yield from _conv(f"{name}.conv2", cout, cout, 3)
    if cin != cout:
        yield from _conv(f"{name}.nin_shortcut", cout, cin, 1)


def _vae_mid(name: str, ch: int) -> Iterator[tuple[str, Shape]]:
    yield from _vae_resblock(f"{name}.block_1", ch, ch)
    yield from _norm(f"{name}.attn_1.norm", ch)
    for part in ("q", "k", "v", "proj_out"):
        yield from _conv(f"{name}.attn_1.{part}", ch, ch, 1)
    yield from _vae_resblock(f"{name}.block_2", ch, ch)


def vae_layout(p: Mapping[str, Any]) -> Iterator[tuple[str, Shape]]:
    """KL autoencoder tensors (without the ``first_stage_model.`` prefix)."""
    ch, mults, nres, z = p["ch"], p["ch_mult"], p["num_res_blocks"], p["z_channels"]
    yield from _conv("encoder.conv_in", ch, p["in_channels"], 3)
    block_in = ch
    for i, mult in enumerate(mults):
        for j in range(nres):
            yield from _vae_resblock(f"encoder.down.{i}.block.{j}", block_in, ch * mult)
            block_in = ch * mult
        if i != len(mults) - 1:
            yield from _conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    yield from _vae_mid("encoder.mid", block_in)
    yield from _norm("encoder.norm_out", block_in)
    yield from _conv("encoder.conv_out", 2 * z, block_in, 3)
    yield from _conv("quant_conv", 2 * z, 2 * z, 1)
    yield from _conv("post_quant_conv", z, z, 1)
    block_in = ch * mults[-1]
    yield from _conv("decoder.conv_in", block_in, z, 3)
    yield from _vae_mid("decoder.mid", block_in)
    for i in reversed(range(len(mults))):
        for j in range(nres + 1):
            yield from _vae_resblock(f"decoder.up.{i}.block.{j}", block_in, ch * mults[i])
            block_in = ch * mults[i]
        if i != 0:
            yield from _conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    yield from _norm("decoder.norm_out", block_in)
    yield from _conv("decoder.conv_out", p["out_ch"], block_in, 3)


def hf_clip_layout(p: Mapping[str, Any]) -> Iterator[tuple[str, Shape]]:
    """transformers CLIPTextModel tensors (``text_model.*``)."""
    w, m = p["width"], p["mlp"]
    yield "text_model.embeddings.token_embedding.weight", (p["vocab"], w)
    yield "text_model.embeddings.position_embedding.weight", (p["positions"], w)
    for i in range(p["layers"]):
        layer = f"text_model.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            yield from _linear(f"{layer}.self_attn.{proj}", w, w)
        yield from _norm(f"{layer}.layer_norm1", w)
        yield from _linear(f"{layer}.mlp.fc1", m, w)
        yield from _linear(f"{layer}.mlp.fc2", w, m)
        yield from _norm(f"{layer}.layer_norm2", w)
    yield from _norm("text_model.final_layer_norm", w)


def open_clip_layout(p: Mapping[str, Any]) -> Iterator[tuple[str, Shape]]:
    """OpenCLIP text tower tensors (``token_embedding``, ``transformer.resblocks.N``, ``text_projection``)."""
    w, m = p["width"], p["mlp"]
    yield "token_embedding.weight", (p["vocab"], w)
    yield "positional_embedding", (p["positions"], w)
    for i in range(p["layers"]):
        block = f"transformer.resblocks.{i}"
        yield from _norm(f"{block}.ln_1", w)
        yield f"{block}.attn.in_proj_weight", (3 * w, w)
        yield f"{block}.attn.in_proj_bias", (3 * w,)
        yield from _linear(f"{block}.attn.out_proj", w, w)
        yield from _norm(f"{block}.ln_2", w)
        yield from _linear(f"{block}.mlp.c_fc", m, w)
        yield from _linear(f"{block}.mlp.c_proj", w, m)
    yield from _norm("ln_final", w)
    yield "text_projection", (w, p.get("projection", w))


TEXT_LAYOUTS = {"hf_clip": hf_clip_layout, "open_clip": open_clip_layout}


def checkpoint_layout(spec: Mapping[str, Any]) -> dict[str, Shape]:
    """Every tensor of a single-file checkpoint for an arch description: full key → shape."""
    layout: dict[str, Shape] = {}
    for key, shape in unet_layout(spec["unet"]):
        layout[UNET_PREFIX + key] = shape
    for key, shape in vae_layout(spec["vae"]):
        layout[VAE_PREFIX + key] = shape
    for encoder in spec["text_encoders"]:
        for key, shape in TEXT_LAYOUTS[encoder["layout"]](encoder):
            layout[encoder["prefix"] + key] = shape
    return layout
