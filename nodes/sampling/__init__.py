"""Sampling node pack: KSampler and KSamplerAdvanced with ComfyUI's exact numerics.

Importing this package does not import torch; the implementation modules (``ksampler``,
``samplers``, ``schedulers``, ``guidance``, ``denoiser``, ``noise``, ``unipc``, ``preview``) are
imported when a sampler node runs. ``nodes.sampling.names`` holds the name tables.
"""

from __future__ import annotations

from graphengine.registry import NodePack
from nodes.sampling.sampler_nodes import KSampler, KSamplerAdvanced


def pack() -> NodePack:
    return NodePack(name="sampling", nodes=(KSampler, KSamplerAdvanced))
