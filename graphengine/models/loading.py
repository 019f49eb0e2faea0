"""Turn checkpoint tensors into diffusers / transformers modules, fully offline.

Steps for a single-file checkpoint (``load_components``):

1. read the safetensors header and recognise the model (``detection.detect``) before loading data;
2. load the tensors (pickle only with explicit opt-in) and cast them to the storage dtype;
3. convert names with diffusers' own converters (``convert_ldm_unet_checkpoint``,
   ``convert_ldm_vae_checkpoint``, ``convert_open_clip_checkpoint``; CLIP-L only loses its prefix);
4. build each module on the ``meta`` device from a config derived from the shapes and the family
   table, then ``load_state_dict(strict=True, assign=True)``: no random initialisation, no copies.

Diffusers folders (``model_index.json`` with ``unet/``, ``vae/``, ``text_encoder/`` …) are read the
same way from their per-component safetensors files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graphengine.models import detection
from graphengine.models.detection import DetectedModel, TextEncoderSpec, UnsupportedModel
from graphengine.models.families import Family, family
from graphengine.models.safetensors_io import CheckpointError, checkpoint_shapes, load_state_dict
from graphengine.models.tokenizers import clip_tokenizer

logger = logging.getLogger(__name__)

_OPEN_CLIP_TEMP_PREFIX = "graphengine_te."


@dataclass
class Components:
    """The modules of one checkpoint, not yet wrapped in socket values."""

    path: Path
    detected: DetectedModel
    unet: Any | None
    vae: Any | None
    text_encoders: tuple[Any, ...]
    tokenizers: tuple[Any, ...]
    ldm_unet_names: dict[str, str]  # diffusers module path → LDM module path (for LoRA key mapping)


def _build(cls: type, config: Any, state: Mapping[str, torch.Tensor], what: str, path: Path) -> Any:
    with torch.device("meta"):
        module = cls(config) if not isinstance(config, dict) else cls(**config)
    try:
        module.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"{what} tensors do not match the detected architecture: {str(exc)[:400]}") from exc
    for name, buffer in list(module.named_buffers()):
        if buffer.device.type == "meta":
            if name.endswith("position_ids"):
                owner = module.get_submodule(name.rsplit(".", 1)[0])
                owner.position_ids = torch.arange(buffer.shape[-1]).expand((1, -1))
            else:
                raise CheckpointError(path, f"{what}: buffer {name} was not initialised")
    module.eval()
    module.requires_grad_(False)
    return module


def ldm_unet_name_map(unet_shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> dict[str, str]:
    """diffusers parameter path → LDM parameter path, by running diffusers' converter on names."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    names = {"model.diffusion_model." + key: key for key in unet_shapes}
    converted = convert_ldm_unet_checkpoint(names, dict(config))
    return {diffusers_key: ldm_key for diffusers_key, ldm_key in converted.items() if isinstance(ldm_key, str)}


def build_unet(detected: DetectedModel, state: Mapping[str, torch.Tensor], path: Path) -> tuple[Any, dict[str, str]]:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    prefix = detected.unet_prefix or ""
    config = detection.unet_diffusers_config(detected)
    ldm = {"model.diffusion_model." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if prefix == "":
        ldm = {k: v for k, v in ldm.items() if not k.startswith(("model.diffusion_model.first_stage_model.", "model.diffusion_model.cond_stage_model."))}
    converted = convert_ldm_unet_checkpoint(ldm, config)
    unet = _build(UNet2DConditionModel, config, converted, "UNet", path)
    name_map = ldm_unet_name_map({k[len("model.diffusion_model.") :]: () for k in ldm}, config)
    return unet, name_map


def build_vae(vae_params: Mapping[str, Any], scaling_factor: float, state: Mapping[str, torch.Tensor], path: Path) -> Any:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = detection.vae_diffusers_config(vae_params, scaling_factor)
    converted = convert_ldm_vae_checkpoint(dict(state), config)
    return _build(AutoencoderKL, config, converted, "VAE", path)


def build_text_encoder(spec: TextEncoderSpec, state: Mapping[str, torch.Tensor], path: Path) -> Any:
    import transformers
    from transformers import CLIPTextConfig

    prefix = spec.role.prefix
    if spec.role.layout == "hf_clip":
        weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        weights.pop("text_model.embeddings.position_ids", None)
    else:
        from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

        # Re-prefix so diffusers' SD2 "drop the last layer" list does not apply: we keep every layer
        # and choose the hidden layer at encode time, as ComfyUI does.
        renamed = {_OPEN_CLIP_TEMP_PREFIX + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        holder = type("ConfigHolder", (), {"config": CLIPTextConfig(hidden_size=spec.width)})()
        weights = convert_open_clip_checkpoint(holder, renamed, prefix=_OPEN_CLIP_TEMP_PREFIX)
    config = CLIPTextConfig(**spec.transformers_config())
    cls = getattr(transformers, spec.role.model_class)
    if spec.role.model_class == "CLIPTextModel":
        weights.pop("text_projection.weight", None)
    elif "text_projection.weight" not in weights:
        raise CheckpointError(path, f"{spec.role.role} text encoder has no text projection")
    if not _has_text_model_prefix(cls, config):
        # transformers 5's CLIPTextModel holds the text transformer directly (no ``text_model.``).
        weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    return _build(cls, config, weights, f"{spec.role.role} text encoder", path)


def _has_text_model_prefix(cls: type, config: Any) -> bool:
    with torch.device("meta"):
        probe = cls(type(config)(**{**config.to_dict(), "num_hidden_layers": 1}))
    return any(name.startswith("text_model.") for name in probe.state_dict())


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() and v.dtype != dtype else v) for k, v in state.items()}


def inspect_file(path: Path, *, allow_pickle: bool | None = None, require: tuple[str, ...] = ("unet", "vae", "text")) -> DetectedModel:
    """Recognise a checkpoint from its header (safetensors) without loading the data."""
    shapes, metadata = checkpoint_shapes(path, allow_pickle=allow_pickle)

    def tensor(name: str) -> torch.Tensor:
        from safetensors import safe_open

        if path.suffix.lower() not in (".safetensors", ".sft"):
            return load_state_dict(path, allow_pickle=allow_pickle)[name]
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor(name)

    try:
        return detection.detect(shapes, metadata, tensor, require=require)
    except UnsupportedModel as exc:
        raise CheckpointError(path, f"unsupported model: {exc}") from exc


def load_components(
    path: Path,
    *,
    dtype: torch.dtype,
    vae_dtype: torch.dtype | None = None,
    allow_pickle: bool | None = None,
    parts: tuple[str, ...] = ("unet", "vae", "text"),
) -> Components:
    """Load a single-file checkpoint's UNet, VAE and text encoders (those named in ``parts``).

    ``dtype`` is the UNet's and text encoders' storage dtype, ``vae_dtype`` the VAE's (default: ``dtype``).
    """
    path = Path(path)
    vae_dtype = vae_dtype or dtype
    if path.is_dir():
        return load_diffusers_folder(path, dtype=dtype, vae_dtype=vae_dtype, parts=parts)
    detected = inspect_file(path, allow_pickle=allow_pickle, require=parts)
    raw = load_state_dict(path, allow_pickle=allow_pickle)
    vae_prefix = detected.vae_prefix
    vae_state = {k: v for k, v in raw.items() if vae_prefix is not None and k.startswith(vae_prefix)} if "vae" in parts else {}
    state = _cast({k: v for k, v in raw.items() if k not in vae_state}, dtype)
    del raw
    fam = detected.family
    unet, names = (None, {})
    if "unet" in parts and detected.unet is not None:
        unet, names = build_unet(detected, state, path)
    vae = None
    if "vae" in parts and detected.vae is not None:
        vae = build_vae(detected.vae, fam.latent_format.scale_factor, _cast(vae_state, vae_dtype), path)
        del vae_state
    encoders: tuple[Any, ...] = ()
    tokenizers: tuple[Any, ...] = ()
    if "text" in parts:
        encoders = tuple(build_text_encoder(spec, state, path) for spec in detected.text_encoders)
        tokenizers = tuple(clip_tokenizer(spec.role.tokenizer) for spec in detected.text_encoders)
    del state
    logger.info("loaded %s as %s (%s prediction)%s", path.name, fam.label, detected.prediction,
                "; " + "; ".join(detected.notes) if detected.notes else "")
    return Components(path, detected, unet, vae, encoders, tokenizers, names)


def load_vae_file(path: Path, *, dtype: torch.dtype, scaling_factor: float | None = None, allow_pickle: bool | None = None) -> Any:
    """A standalone VAE file (LDM or diffusers key layout) → ``AutoencoderKL``."""
    from diffusers import AutoencoderKL

    shapes, _ = checkpoint_shapes(path, allow_pickle=allow_pickle)
    prefix = detection.find_vae_prefix(shapes)
    if prefix is None:
        if "encoder.down_blocks.0.resnets.0.conv1.weight" in shapes:
            return _load_diffusers_vae_weights(path, shapes, dtype, scaling_factor, allow_pickle)
        raise CheckpointError(path, "unsupported model: not a VAE (no encoder/decoder tensors found)")
    params = detection.vae_params(shapes, prefix)
    state = _cast(load_state_dict(path, allow_pickle=allow_pickle), dtype)
    return build_vae(params, scaling_factor or 0.18215, state, path)


def _load_diffusers_vae_weights(path: Path, shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype,
                                scaling_factor: float | None, allow_pickle: bool | None) -> Any:
    from diffusers import AutoencoderKL

    ch = shapes["encoder.conv_in.weight"][0]
    levels = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down_blocks."))
    mults = [shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"][0] // ch for i in range(levels)]
    nres = 1 + max(int(k.split(".")[4]) for k in shapes if k.startswith("encoder.down_blocks.0.resnets."))
    params = {"in_channels": shapes["encoder.conv_in.weight"][1], "out_ch": shapes["decoder.conv_out.weight"][0],
              "ch": ch, "ch_mult": mults, "num_res_blocks": nres, "z_channels": shapes["decoder.conv_in.weight"][1]}
    config = detection.vae_diffusers_config(params, scaling_factor or 0.18215)
    state = _cast(load_state_dict(path, allow_pickle=allow_pickle), dtype)
    for key in list(state):
        if state[key].ndim == 4 and ".attentions." in key and key.endswith("weight") and "norm" not in key:
            state[key] = state[key][:, :, 0, 0]
    return _build(AutoencoderKL, config, state, "VAE", path)


def load_diffusers_folder(
    folder: Path, *, dtype: torch.dtype, vae_dtype: torch.dtype | None = None, parts: tuple[str, ...] = ("unet", "vae", "text")
) -> Components:
    """A diffusers pipeline folder (``model_index.json``) → components, from local files only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise CheckpointError(folder, "not a diffusers folder (model_index.json is missing)")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(folder, f"model_index.json is not valid JSON: {exc}") from exc
    fam_name = "sdxl" if "text_encoder_2" in index and "text_encoder" in index else ("sdxl_refiner" if "text_encoder_2" in index else "sd15")
    unet = vae = None

    def load(component: str, loader: Callable[..., Any], torch_dtype: torch.dtype = dtype) -> Any:
        try:
            return loader(folder / component, torch_dtype=torch_dtype, local_files_only=True, use_safetensors=True)
        except Exception as exc:
            raise CheckpointError(folder, f"cannot load diffusers component {component}: {exc}") from exc

    if "unet" in parts:
        unet = load("unet", UNet2DConditionModel.from_pretrained)
        context = unet.config.cross_attention_dim
        if fam_name == "sd15" and context == 1024:
            fam_name = "sd2"
    if "vae" in parts:
        vae = load("vae", AutoencoderKL.from_pretrained, vae_dtype or dtype)
    fam: Family = family(fam_name)
    encoders: list[Any] = []
    tokenizers: list[Any] = []
    if "text" in parts:
        for component, role in zip(("text_encoder", "text_encoder_2") if fam_name != "sdxl_refiner" else ("text_encoder_2",), fam.text_encoders):
            cls = CLIPTextModelWithProjection if role.model_class == "CLIPTextModelWithProjection" else CLIPTextModel
            encoders.append(load(component, cls.from_pretrained).eval())
            tokenizers.append(clip_tokenizer(role.tokenizer))
    prediction = fam.prediction
    scheduler_config = folder / "scheduler" / "scheduler_config.json"
    if scheduler_config.is_file():
        try:
            if json.loads(scheduler_config.read_text()).get("prediction_type") == "v_prediction":
                prediction = "v_prediction"
        except json.JSONDecodeError:
            pass
    detected = DetectedModel(fam, None, None, None, None, (), prediction, ("diffusers folder",))
    for module in (unet, vae, *encoders):
        if module is not None:
            module.eval().requires_grad_(False)
    return Components(folder, detected, unet, vae, tuple(encoders), tuple(tokenizers), {})

