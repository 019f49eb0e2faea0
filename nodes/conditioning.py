"""Conditioning nodes: CLIPTextEncode, ConditioningCombine, ConditioningSetArea.

Importing this module does not import torch; the text encoder is loaded inside ``run``.

Keys of ``ConditioningEntry.extras``: CLIPTextEncode sets none (as ComfyUI). SDXL size conditioning
(``width``, ``height``, ``crop_w``, ``crop_h``, ``target_width``, ``target_height``, and
``aesthetic_score`` for the refiner) is filled by the sampler from the latent size when absent.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from graphengine.errors import NodeInputError
from graphengine.node import Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Clip, Conditioning

MAX_RESOLUTION = 16384
LATENT_SCALE = 8  # pixels per latent cell


class CLIPTextEncode(Node):
    """Turns a text prompt into conditioning with a CLIP text encoder.

    Supports ComfyUI's prompt syntax: `(text)` weights by 1.1 (nesting multiplies), `(text:1.3)` sets
    a weight, `\\(` and `\\)` are literal parentheses, and `embedding:name` inserts a textual-inversion
    embedding from the embeddings folder. Long prompts are encoded in windows of 75 tokens.
    """

    display_name: ClassVar[str] = "CLIP Text Encode (Prompt)"
    category: ClassVar[str] = "conditioning"

    text: str = Input(multiline=True, dynamic_prompts=True, tooltip="The prompt to encode.")
    clip: Clip = Input(tooltip="The text encoder(s), from a checkpoint or CLIP loader.")

    class Outputs(NodeOutputs):
        conditioning: Conditioning = Output(tooltip="The encoded prompt, for a sampler's positive or negative input.")

    def run(self, ctx: NodeContext) -> CLIPTextEncode.Outputs:
        from nodes.text_encoding.encoder import embedding_folders, encode_prompt

        models = ctx.env.models if ctx.env is not None else None
        library_dirs = getattr(models, "embedding_dirs", None)
        fallback = library_dirs() if callable(library_dirs) else ()
        try:
            entry = encode_prompt(self.clip, self.text, embedding_folders(self.clip, fallback))
        except NodeInputError as exc:
            raise NodeInputError(f"{self.title()}: {exc}") from exc
        return self.Outputs(conditioning=Conditioning(entries=(entry,)))


class ConditioningCombine(Node):
    """Joins two conditionings into one list; the sampler applies every entry (e.g. two areas)."""

    display_name: ClassVar[str] = "Conditioning (Combine)"
    category: ClassVar[str] = "conditioning"

    conditioning_1: Conditioning = Input()
    conditioning_2: Conditioning = Input()

    class Outputs(NodeOutputs):
        conditioning: Conditioning = Output()

    def run(self, ctx: NodeContext) -> ConditioningCombine.Outputs:
        entries = self.conditioning_1.entries + self.conditioning_2.entries
        return self.Outputs(conditioning=Conditioning(entries=entries))


class ConditioningSetArea(Node):
    """Limits a conditioning to a rectangle of the image (in pixels, stored in latent units) with a strength."""

    display_name: ClassVar[str] = "Conditioning (Set Area)"
    category: ClassVar[str] = "conditioning"

    conditioning: Conditioning = Input()
    width: int = Input(64, min=64, max=MAX_RESOLUTION, step=8, tooltip="Area width in pixels.")
    height: int = Input(64, min=64, max=MAX_RESOLUTION, step=8, tooltip="Area height in pixels.")
    x: int = Input(0, min=0, max=MAX_RESOLUTION, step=8, tooltip="Left edge of the area in pixels.")
    y: int = Input(0, min=0, max=MAX_RESOLUTION, step=8, tooltip="Top edge of the area in pixels.")
    strength: float = Input(1.0, min=0.0, max=10.0, step=0.01, tooltip="How strongly the area's prompt applies.")

    class Outputs(NodeOutputs):
        conditioning: Conditioning = Output()

    def run(self, ctx: NodeContext) -> ConditioningSetArea.Outputs:
        area = (
            self.height // LATENT_SCALE,
            self.width // LATENT_SCALE,
            self.y // LATENT_SCALE,
            self.x // LATENT_SCALE,
        )
        entries = tuple(
            dataclasses.replace(entry, area=area, strength=self.strength) for entry in self.conditioning.entries
        )
        return self.Outputs(conditioning=Conditioning(entries=entries))


def pack() -> NodePack:
    return NodePack(name="conditioning", nodes=(CLIPTextEncode, ConditioningCombine, ConditioningSetArea))
