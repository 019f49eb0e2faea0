"""LoRA files (kohya and diffusers/PEFT safetensors) → weight patches for our diffusers modules.

A LoRA holds, per adapted layer, ``down`` ``[r, in(, kh, kw)]``, ``up`` ``[out, r(, 1, 1)]`` and an
optional ``alpha``; the layer's weight changes by ``strength · alpha / r · up @ down``.

Key formats understood:

- kohya: ``lora_unet_<module>``, ``lora_te_<module>`` (SD1/SD2), ``lora_te1_`` / ``lora_te2_``
  (SDXL's two encoders), with ``.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``. ``<module>``
  is a module path with dots turned into underscores, in diffusers naming
  (``down_blocks_0_attentions_0_…``) or in the original LDM naming (``input_blocks_1_1_…``, as
  kohya's SDXL scripts write);
- diffusers / PEFT: ``unet.<module>``, ``text_encoder.<module>``, ``text_encoder_2.<module>`` with
  ``.lora_A.weight`` / ``.lora_B.weight`` or ``.lora.down.weight`` / ``.lora.up.weight``
  (``processor.to_q_lora`` attention-processor names included), and ComfyUI's
  ``diffusion_model.<ldm module>.lora_down.weight``.

Names are resolved by walking the target modules: each ``Linear``/``Conv2d`` path is turned into its
underscore form (and, for UNets loaded from LDM files, its LDM path too), so no hand-written table is
needed. Keys that match nothing are reported, not silently dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graphengine.models.safetensors_io import CheckpointError, load_state_dict

logger = logging.getLogger(__name__)

UNET_TARGET = "unet"


def text_target(index: int) -> str:
    return f"text:{index}"


@dataclass(frozen=True, eq=False)
class LoraDelta:
    """One adapted layer: ``weight += scale · up @ down`` (reshaped to the weight's shape)."""

    up: torch.Tensor
    down: torch.Tensor
    alpha: float | None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self, weight_shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        up = self.up.to(device=device, dtype=torch.float32)
        down = self.down.to(device=device, dtype=torch.float32)
        scale = (self.alpha / self.rank) if self.alpha is not None else 1.0
        if down.ndim == 4 and down.shape[2:] != (1, 1):  # conv kxk down, 1x1 up
            result = torch.nn.functional.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)
        else:
            result = up.flatten(1) @ down.flatten(1)
        return (result.reshape(weight_shape) * scale).to(dtype)


@dataclass(frozen=True, eq=False)
class WeightPatch:
    """LoRA deltas for the parameters of one module tree (``target``: "unet" or "text:N"), at a strength."""

    target: str
    deltas: Mapping[str, LoraDelta]  # parameter path (e.g. "down_blocks.0…to_q.weight") → delta
    strength: float
    source: str = ""


@dataclass(frozen=True)
class ParsedLora:
    """A LoRA file grouped by layer: ``layers[(family, module_key)] = LoraDelta``.

    ``family`` is "unet", "te", "te1", "te2" (text encoders) and ``module_key`` the name as written
    (underscored for kohya, dotted for diffusers/PEFT/ComfyUI).
    """

    path: Path
    layers: Mapping[tuple[str, str], LoraDelta]
    skipped: tuple[str, ...] = field(default_factory=tuple)


_KOHYA = re.compile(r"^lora_(unet|te|te1|te2)_(.+?)\.(lora_down|lora_up|alpha)(?:\.weight)?$")
_DOTTED = re.compile(
    r"^(unet|text_encoder|text_encoder_2|diffusion_model|lora_unet|transformer)\.(.+?)\."
    r"(lora_A|lora_B|lora\.down|lora\.up|lora_down|lora_up|alpha)(?:\.weight)?$"
)
_DOTTED_FAMILY = {"unet": "unet", "diffusion_model": "unet", "lora_unet": "unet", "transformer": "unet",
                  "text_encoder": "te1", "text_encoder_2": "te2"}
_ROLE = {"lora_down": "down", "lora_A": "down", "lora.down": "down",
         "lora_up": "up", "lora_B": "up", "lora.up": "up", "alpha": "alpha"}


def parse_lora(path: Path, *, allow_pickle: bool | None = None) -> ParsedLora:
    """Read a LoRA file into per-layer deltas; refuses files with no recognisable LoRA keys."""
    state = load_state_dict(path, allow_pickle=allow_pickle)
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: list[str] = []
    for key, value in state.items():
        match = _KOHYA.match(key)
        if match:
            fam, module, role = match.group(1), match.group(2), _ROLE[match.group(3)]
        else:
            match = _DOTTED.match(key)
            if not match:
                skipped.append(key)
                continue
            fam, module, role = _DOTTED_FAMILY[match.group(1)], match.group(2), _ROLE[match.group(3)]
            module = re.sub(r"\.processor\.(to_[qkv]|to_out)_lora$", r".\1", module)
            if module.endswith(".processor.to_out") or module.endswith(".to_out"):
                module = module + ".0" if not module.endswith(".0") else module
            module = module.replace(".processor.", ".")
            if match.group(1) == "diffusion_model":
                fam = "unet_ldm"
        parts.setdefault((fam, module), {})[role] = value
    layers: dict[tuple[str, str], LoraDelta] = {}
    for key, roles in parts.items():
        if "up" not in roles or "down" not in roles:
            skipped.append(f"{key[0]}:{key[1]}")
            continue
        alpha = roles.get("alpha")
        layers[key] = LoraDelta(
            up=roles["up"], down=roles["down"], alpha=float(alpha.float().item()) if alpha is not None else None
        )
    if not layers:
        raise CheckpointError(path, "not a LoRA file: no lora_up/lora_down (or lora_A/lora_B) tensors found")
    return ParsedLora(path=path, layers=layers, skipped=tuple(skipped))


def _underscored(name: str) -> str:
    return name.replace(".", "_")


def module_index(module: Any, ldm_names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every way a LoRA may name an adaptable layer of ``module`` → its parameter path ``<path>.weight``.

    Keys: the dotted path, its underscore form, both without a leading ``text_model.`` (transformers
    5 flattened CLIPTextModel) and, given ``ldm_names`` (diffusers param → LDM param), the LDM forms.
    """
    index: dict[str, str] = {}
    for name, sub in module.named_modules():
        if not isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)) or not name:
            continue
        target = f"{name}.weight"
        for alias in (name, "text_model." + name if not name.startswith("text_model.") else name[len("text_model.") :]):
            index.setdefault(alias, target)
            index.setdefault(_underscored(alias), target)
    if ldm_names:
        for diffusers_param, ldm_param in ldm_names.items():
            if not diffusers_param.endswith(".weight") or diffusers_param not in index.values():
                continue
            ldm_module = ldm_param[: -len(".weight")]
            index.setdefault(ldm_module, diffusers_param)
            index.setdefault(_underscored(ldm_module), diffusers_param)
    return index


def _fits(module: Any, parameter: str, delta: LoraDelta) -> bool:
    """Whether ``up @ down`` has the parameter's (out, in) shape."""
    shape = module.get_parameter(parameter).shape
    return delta.up.shape[0] == shape[0] and delta.down.shape[1] == shape[1] and (
        delta.up.flatten(1).shape[1] == delta.down.shape[0]
    )


def build_patches(
    parsed: ParsedLora,
    strength: float,
    unet: Any | None,
    unet_ldm_names: Mapping[str, str] | None,
    text_encoders: tuple[Any, ...],
    *,
    source: str = "",
) -> tuple[tuple[WeightPatch, ...], tuple[WeightPatch, ...], list[str]]:
    """(UNet patches, text encoder patches, names that matched no layer)."""
    unet_index = module_index(unet, unet_ldm_names) if unet is not None else {}
    text_indexes = [module_index(encoder) for encoder in text_encoders]
    unet_deltas: dict[str, LoraDelta] = {}
    text_deltas: dict[int, dict[str, LoraDelta]] = {}
    unmatched: list[str] = []
    for (fam, name), delta in parsed.layers.items():
        if fam in ("unet", "unet_ldm"):
            target = unet_index.get(name)
            if target is None or not _fits(unet, target, delta):
                unmatched.append(f"unet:{name}" + ("" if target is None else " (shape mismatch)"))
                continue
            unet_deltas[target] = delta
            continue
        slot = {"te": 0, "te1": 0, "te2": 1}[fam]
        if slot >= len(text_indexes):
            unmatched.append(f"{fam}:{name}")
            continue
        target = text_indexes[slot].get(name)
        if target is None or not _fits(text_encoders[slot], target, delta):
            unmatched.append(f"{fam}:{name}" + ("" if target is None else " (shape mismatch)"))
            continue
        text_deltas.setdefault(slot, {})[target] = delta
    unet_patches = (WeightPatch(UNET_TARGET, unet_deltas, strength, source),) if unet_deltas and strength else ()
    text_patches = tuple(
        WeightPatch(text_target(slot), deltas, strength, source) for slot, deltas in sorted(text_deltas.items()) if strength
    )
    if unmatched:
        logger.warning("LoRA %s: %d layer name(s) match no module, e.g. %s", source, len(unmatched), unmatched[:3])
    return unet_patches, text_patches, unmatched
