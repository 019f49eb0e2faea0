"""Encode a prompt with a CLIP (one or two transformers text encoders) as ComfyUI does.

For each text encoder:

1. tokenize the prompt into weighted tokens and lay them out in windows of 77 (``chunking``);
2. when any weight differs from 1, add the empty prompt's window as a reference;
3. run all windows as one batch; textual-inversion vectors replace the token embeddings at their
   positions;
4. take the hidden state of the chosen layer (clip skip), with the final layer norm where the model
   family applies it;
5. move each weighted token relative to the empty prompt: ``z = (z - z_empty) * w + z_empty``;
6. concatenate the windows along the token axis; the pooled output is the first window's end token
   (projected when the encoder has a projection).

Model families (hidden state without clip skip; final norm on it):

=============  ==========================  =======================================
SD1.x          CLIP-L, last layer, normed  pooled unused by the UNet
SD2.x          OpenCLIP-H, penultimate,    normed
SDXL           CLIP-L and OpenCLIP-bigG,   both penultimate, not normed; concatenated to
               pooled from bigG's          768 + 1280 = 2048 features
               projection
SDXL refiner   OpenCLIP-bigG only          penultimate, not normed
=============  ==========================  =======================================

``Clip.skip_layers`` = -1 means "the family's default layer"; -k (k > 1) selects the k-th layer from
the end (normed as the family does); beyond the encoder's depth it falls back to the normed output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.sockets import Clip, ConditioningEntry
from nodes.text_encoding.chunking import SpecialTokens, WeightedToken, empty_window, weighted_token_groups, windows
from nodes.text_encoding.embeddings import EmbeddingFolders
from nodes.text_encoding.parser import PromptError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderSpec:
    """How one text encoder of a family is used."""

    key: str  # "clip_l" | "clip_g" | "clip_h": also the tensor key in SDXL embedding files
    default_layer: int  # -1: last layer, -2: penultimate
    norm_hidden: bool  # apply the final layer norm to the selected hidden state


SD1 = (EncoderSpec("clip_l", -1, True),)
SD2 = (EncoderSpec("clip_h", -2, True),)
SDXL = (EncoderSpec("clip_l", -2, False), EncoderSpec("clip_g", -2, False))
SDXL_REFINER = (EncoderSpec("clip_g", -2, False),)


def encoder_specs(arch: str, encoder_count: int) -> tuple[EncoderSpec, ...]:
    """The family of a CLIP from its ``arch`` name (``sd15``, ``sd2_v``, ``sdxl``, ``micro_sdxl``, …)."""
    name = arch.lower()
    if "refiner" in name:
        specs = SDXL_REFINER
    elif "sdxl" in name or "xl" in name.split("_"):
        specs = SDXL
    elif name.startswith("sd2") or name.startswith("sd21"):
        specs = SD2
    else:
        specs = SDXL if encoder_count == 2 else SD1
    if len(specs) != encoder_count:
        raise PromptError(
            f"this CLIP ({arch}) carries {encoder_count} text encoder(s); its model family uses {len(specs)}"
        )
    return specs


def encode_prompt(clip: Clip, text: str, folders: EmbeddingFolders) -> ConditioningEntry:
    """The conditioning for ``text``: embeds ``[1, 77·n, D]`` and pooled ``[1, P]`` (float32, CPU)."""
    if len(clip.tokenizers) != len(clip.encoders):
        raise PromptError(f"this CLIP has {len(clip.encoders)} text encoders but {len(clip.tokenizers)} tokenizers")
    specs = encoder_specs(clip.arch, len(clip.encoders))
    layouts = [
        _layout(text, tokenizer, spec, _hidden_size(encoder), folders)
        for tokenizer, spec, encoder in zip(clip.tokenizers, specs, clip.encoders, strict=True)
    ]
    with clip.activate() as encoders, torch.no_grad():
        outputs = [
            _encode_windows(encoder, layout, spec, clip.skip_layers)
            for encoder, layout, spec in zip(encoders, layouts, specs, strict=True)
        ]
    if len(outputs) == 1:
        embeds, pooled = outputs[0]
    else:  # SDXL: CLIP-L ⊕ bigG features, pooled from bigG
        tokens = min(z.shape[1] for z, _ in outputs)
        embeds = torch.cat([z[:, :tokens] for z, _ in outputs], dim=-1)
        pooled = outputs[-1][1]
    return ConditioningEntry(embeds=embeds, pooled=pooled)


@dataclass(frozen=True)
class _Layout:
    windows: list[list[WeightedToken]]
    special: SpecialTokens


def _layout(text: str, tokenizer: Any, spec: EncoderSpec, width: int, folders: EmbeddingFolders) -> _Layout:
    special = _special_tokens(tokenizer)

    def tokenize(piece: str) -> list[int]:
        return list(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"])

    def find_embedding(name: str) -> list[torch.Tensor] | None:
        vectors = folders.load(name, key=spec.key, width=width)
        return None if vectors is None else list(vectors)

    groups = weighted_token_groups(text, tokenize, find_embedding)
    return _Layout(windows(groups, special), special)


def _special_tokens(tokenizer: Any) -> SpecialTokens:
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    if start is None or end is None:
        raise PromptError("the CLIP tokenizer has no start/end tokens")
    return SpecialTokens(start=int(start), end=int(end), pad=int(pad))


def _text_model(encoder: Any) -> tuple[Any, Any | None]:
    """(the CLIP text transformer, its projection or None) of a CLIPTextModel[WithProjection]."""
    inner = getattr(encoder, "text_model", None)
    if inner is not None:
        return inner, getattr(encoder, "text_projection", None)
    return encoder, None


def _hidden_size(encoder: Any) -> int:
    return int(_text_model(encoder)[0].config.hidden_size)


def _encode_windows(
    encoder: Any, layout: _Layout, spec: EncoderSpec, skip_layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    text_model, projection = _text_model(encoder)
    device = text_model.embeddings.token_embedding.weight.device
    special = layout.special

    # 1. ids, weights and textual-inversion vectors of every window (+ the empty prompt if weighted).
    rows = [[(token, weight) for token, weight in window] for window in layout.windows]
    weighted = any(weight != 1.0 for row in rows for _, weight in row)
    if weighted:
        rows.append([(token, 1.0) for token in empty_window(special)])
    ids = torch.tensor(
        [[token if isinstance(token, int) else special.start for token, _ in row] for row in rows],
        dtype=torch.long,
    )
    weights = torch.tensor([[weight for _, weight in row] for row in rows], dtype=torch.float32)
    vectors = [
        (r, c, token) for r, row in enumerate(rows) for c, (token, _) in enumerate(row) if not isinstance(token, int)
    ]

    # 2. run the transformer (embedding vectors substituted after the token lookup).
    hook = None
    if vectors:
        hook = text_model.embeddings.token_embedding.register_forward_hook(_substitute(vectors))
    try:
        out = text_model(input_ids=ids.to(device), output_hidden_states=True)
    finally:
        if hook is not None:
            hook.remove()

    # 3. the hidden state of the chosen layer.
    layer = spec.default_layer if skip_layers == -1 else skip_layers
    if layer >= 0:
        raise PromptError(f"clip skip must be negative (-1 = last layer), got {skip_layers}")
    depth = len(out.hidden_states) - 1
    if -layer > depth:
        z = out.last_hidden_state
    else:
        z = out.hidden_states[layer]
        if spec.norm_hidden:
            z = text_model.final_layer_norm(z)
    z = z.float().cpu()

    # 4. pooled: the first window's end token in the normed output, projected if the model has one.
    end_position = int((ids[0] == special.end).nonzero()[0, 0])
    pooled = out.last_hidden_state[0:1, end_position]
    if projection is not None:
        pooled = projection(pooled)
    pooled = pooled.float().cpu()

    # 5. emphasis relative to the empty prompt, then windows side by side.
    if weighted:
        empty = z[-1:]
        z = z[:-1]
        w = weights[:-1, :, None]
        z = torch.where(w != 1.0, (z - empty) * w + empty, z)
    return z.reshape(1, -1, z.shape[-1]), pooled


def _substitute(vectors: Sequence[tuple[int, int, torch.Tensor]]):
    """A forward hook for the token embedding that writes textual-inversion vectors in place."""

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, column, vector in vectors:
            output[row, column] = vector.to(device=output.device, dtype=output.dtype)
        return output

    return hook


def embedding_folders(clip: Clip, fallback: Sequence[str | Path] = ()) -> EmbeddingFolders:
    """The folders ``embedding:name`` is looked up in: the CLIP's own, else ``fallback``."""
    directories = clip.embedding_dirs or tuple(fallback)
    return EmbeddingFolders(tuple(Path(d) for d in directories))
