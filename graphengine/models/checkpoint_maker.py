"""Write a seeded random-weight Stable Diffusion checkpoint in the single-file (LDM) layout.

The result is the file format users download (``model.diffusion_model.*``, ``first_stage_model.*``,
the text encoder(s) under their original prefixes), so every loader path is exercised exactly as with
a real model. Nothing is built as an ``nn.Module``: tensor names and shapes come from
``ldm_layout`` and each tensor is drawn in turn from one CPU generator, then streamed to disk.

Initialisation (enough to keep activations finite, not to draw anything):
1. 1-D ``*.weight`` (normalisation scales) = 1, ``*bias`` = 0;
2. embeddings (token, position) ~ N(0, 0.02);
3. every other weight ~ N(0, 1/fan_in).

Same arch, seed and dtype → the same bytes.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from graphengine.models.ldm_layout import arch_spec, checkpoint_layout
from graphengine.models.safetensors_io import StreamingWriter

logger = logging.getLogger(__name__)

DTYPES = {"fp16": ("F16", "float16"), "bf16": ("BF16", "bfloat16"), "fp32": ("F32", "float32")}
CHUNK_ELEMENTS = 1 << 24  # draw huge tensors in slices to bound peak memory


def _init_kind(name: str, shape: tuple[int, ...]) -> str:
    if name.endswith("bias"):
        return "zeros"
    if len(shape) == 1 and name.endswith("weight"):
        return "ones"
    if "embedding" in name:
        return "embedding"
    return "fan_in"


def make_checkpoint(path: Path | str, arch: str, seed: int = 0, dtype: str = "fp16") -> Path:
    """Write ``path`` (a ``.safetensors`` file) with random weights for ``arch``; returns the path."""
    import torch

    path = Path(path)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    spec = arch_spec(arch)
    st_dtype, torch_dtype_name = DTYPES[dtype]
    torch_dtype = getattr(torch, torch_dtype_name)
    layout = checkpoint_layout(spec)
    metadata = {
        "format": "pt",
        "graphengine.arch": arch,
        "graphengine.family": spec["family"],
        "graphengine.seed": str(seed),
        "graphengine.note": "random weights written by graphengine make-checkpoint; generates noise, not images",
    }
    started = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    temporary = path.with_name(path.name + ".partial")
    writer = StreamingWriter(temporary, {name: (st_dtype, shape) for name, shape in layout.items()}, metadata)
    with writer:
        for name in writer.order:
            shape = layout[name]
            tensor = _draw(name, shape, generator, torch_dtype)
            writer.write(name, tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    temporary.replace(path)
    logger.info("wrote %s (%s, seed %d, %s) in %.1f s", path, arch, seed, dtype, time.perf_counter() - started)
    return path


def _draw(name: str, shape: tuple[int, ...], generator: object, dtype: object) -> object:
    import torch

    kind = _init_kind(name, shape)
    if kind == "zeros":
        return torch.zeros(shape, dtype=dtype)
    if kind == "ones":
        return torch.ones(shape, dtype=dtype)
    std = 0.02 if kind == "embedding" else 1.0 / math.sqrt(max(1, math.prod(shape[1:])))
    flat = torch.empty(math.prod(shape), dtype=dtype)
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        stop = min(start + CHUNK_ELEMENTS, flat.numel())
        flat[start:stop] = torch.randn(stop - start, generator=generator) * std
    return flat.view(shape)
