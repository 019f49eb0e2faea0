"""Write small random LoRA files for a given checkpoint (tests and demos), in kohya's format.

The adapted layers are found from the checkpoint's own tensor names and shapes, so the LoRA fits the
checkpoint it was made for. ``naming="ldm"`` writes kohya's original-UNet names
(``lora_unet_input_blocks_1_1_…``, as kohya's SDXL scripts do), ``naming="diffusers"`` the diffusers
module names (``lora_unet_down_blocks_0_attentions_0_…``, as its SD1 scripts do). Text encoder layers
are written as ``lora_te_…`` (one encoder) or ``lora_te1_`` / ``lora_te2_`` (SDXL).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from graphengine.models import detection
from graphengine.models.ldm_layout import UNET_PREFIX
from graphengine.models.safetensors_io import checkpoint_shapes

UNET_TARGETS = ("attn1.to_q.weight", "attn2.to_k.weight", "ff.net.2.weight", "proj_in.weight")
TEXT_TARGETS = ("self_attn.q_proj.weight", "mlp.fc1.weight")


def _lora_layers(checkpoint: Path, naming: str, unet: bool, text: bool) -> dict[str, tuple[int, ...]]:
    """kohya layer name → the adapted weight's shape."""
    from graphengine.models.loading import ldm_unet_name_map

    shapes, metadata = checkpoint_shapes(checkpoint)
    detected = detection.detect(shapes, metadata, require=())
    layers: dict[str, tuple[int, ...]] = {}
    if unet and detected.unet_prefix is not None:
        prefix = detected.unet_prefix
        unet_shapes = {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}
        to_diffusers = {}
        if naming == "diffusers":
            mapping = ldm_unet_name_map(unet_shapes, detection.unet_diffusers_config(detected))
            to_diffusers = {ldm: diff for diff, ldm in mapping.items()}
        for key, shape in sorted(unet_shapes.items()):
            if not key.endswith(UNET_TARGETS):
                continue
            name = to_diffusers.get(key, key) if naming == "diffusers" else key
            layers["lora_unet_" + name[: -len(".weight")].replace(".", "_")] = shape
    if text:
        encoders = detected.text_encoders
        for index, spec in enumerate(encoders):
            tag = "lora_te" if len(encoders) == 1 else f"lora_te{index + 1}"
            width, mlp = spec.width, spec.mlp
            for layer in range(spec.layers):
                base = f"{tag}_text_model_encoder_layers_{layer}_"
                layers[base + "self_attn_q_proj"] = (width, width)
                layers[base + "mlp_fc1"] = (mlp, width)
    return layers


def make_lora(
    path: Path | str,
    checkpoint: Path | str,
    *,
    rank: int = 4,
    alpha: float | None = None,
    seed: int = 0,
    naming: str = "diffusers",
    unet: bool = True,
    text: bool = True,
    scale: float = 0.05,
) -> Path:
    """Write a kohya-format LoRA for ``checkpoint`` to ``path`` and return the path."""
    import torch
    from safetensors.torch import save_file

    if naming not in ("diffusers", "ldm"):
        raise ValueError("naming must be 'diffusers' or 'ldm'")
    path = Path(path)
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in _lora_layers(Path(checkpoint), naming, unet, text).items():
        out_features, in_features = shape[0], shape[1]
        tail: Sequence[int] = (1, 1) if len(shape) == 4 else ()
        tensors[f"{name}.lora_down.weight"] = (torch.randn((rank, in_features, *tail), generator=generator) * scale).half()
        tensors[f"{name}.lora_up.weight"] = (torch.randn((out_features, rank, *tail), generator=generator) * scale).half()
        tensors[f"{name}.alpha"] = torch.tensor(float(alpha if alpha is not None else rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora", "graphengine.note": "random test LoRA"})
    return path
