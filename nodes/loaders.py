"""Loader nodes: checkpoints, VAEs, LoRAs, diffusion-model-only files, and CLIP skip (ComfyUI's names).

Combos list the files in the models directory at the time of asking (``/object_info`` re-reads them),
so a missing file is a validation error that lists what is available. Importing this module does not
import torch: the model manager is reached through ``ctx.env.models`` only when a node runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from graphengine.errors import NodeInputError
from graphengine.node import Combo, Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Clip, Model, Vae

if TYPE_CHECKING:
    from graphengine.environment import Environment

WEIGHT_DTYPES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
LORA_STRENGTH = {"min": -100.0, "max": 100.0, "step": 0.01}


def _files(folder: str) -> Any:
    def options(env: Environment) -> Sequence[str]:
        if env.models is None:
            return []
        return env.models.list(folder)

    options.__name__ = f"{folder}_files"
    return options


def _library(ctx: NodeContext) -> Any:
    library = ctx.env.models
    if library is None or not hasattr(library, "manager"):
        raise NodeInputError("no model library is configured (start with --models-dir)")
    return library


@contextmanager
def _model_errors(kind: str, name: str) -> Iterator[None]:
    """Turn loading failures into one clear message naming the file and the reason."""
    from graphengine.models.library import ModelNameRejected, ModelNotFound
    from graphengine.models.safetensors_io import CheckpointError

    try:
        yield
    except (ModelNotFound, ModelNameRejected) as exc:
        raise NodeInputError(str(exc)) from exc
    except CheckpointError as exc:
        raise NodeInputError(f"cannot load {kind} {name!r}: {exc.reason}") from exc
    except MemoryError as exc:
        raise NodeInputError(f"not enough memory to load {kind} {name!r}") from exc


def _resolve(ctx: NodeContext, folder: str, name: str) -> Path:
    with _model_errors(folder, name):
        return _library(ctx).resolve(folder, name)


def _with_embeddings(ctx: NodeContext, clip: Clip) -> Clip:
    """The CLIP with the library's embeddings folders (for ``embedding:name`` in prompts)."""
    folders = getattr(ctx.env.models, "embedding_dirs", None)
    if clip.embedding_dirs or folders is None:
        return clip
    return replace(clip, embedding_dirs=tuple(folders()))


class CheckpointLoaderSimple(Node):
    """Loads a diffusion model checkpoint; diffusion models are used to denoise latents."""

    display_name: ClassVar[str] = "Load Checkpoint"
    category: ClassVar[str] = "loaders"

    ckpt_name: str = Combo(_files("checkpoints"), tooltip="The name of the checkpoint (model) to load.")

    class Outputs(NodeOutputs):
        model: Model = Output(tooltip="The model used for denoising latents.")
        clip: Clip = Output(tooltip="The CLIP model used for encoding text prompts.")
        vae: Vae = Output(tooltip="The VAE model used for encoding and decoding images to and from latent space.")

    def run(self, ctx: NodeContext) -> CheckpointLoaderSimple.Outputs:
        path = _resolve(ctx, "checkpoints", self.ckpt_name)
        with _model_errors("checkpoint", self.ckpt_name):
            model, clip, vae = _library(ctx).manager.load_checkpoint(path)
        return self.Outputs(model=model, clip=_with_embeddings(ctx, clip), vae=vae)


class VAELoader(Node):
    """Loads a VAE from the vae folder (to replace a checkpoint's own)."""

    display_name: ClassVar[str] = "Load VAE"
    category: ClassVar[str] = "loaders"

    vae_name: str = Combo(_files("vae"), tooltip="The name of the VAE to load.")

    class Outputs(NodeOutputs):
        vae: Vae = Output()

    def run(self, ctx: NodeContext) -> VAELoader.Outputs:
        path = _resolve(ctx, "vae", self.vae_name)
        scaling = 0.13025 if "xl" in Path(self.vae_name).name.lower() else None
        with _model_errors("VAE", self.vae_name):
            vae = _library(ctx).manager.load_vae(path, scaling_factor=scaling)
        return self.Outputs(vae=vae)


def _apply_lora(ctx: NodeContext, model: Model | None, clip: Clip | None, lora_name: str,
                strength_model: float, strength_clip: float) -> tuple[Model | None, Clip | None]:
    if strength_model == 0 and strength_clip == 0:
        return model, clip
    path = _resolve(ctx, "loras", lora_name)
    with _model_errors("LoRA", lora_name):
        manager = _library(ctx).manager
        parsed = manager.load_lora(path)
        return manager.apply_lora(model, clip, parsed, strength_model, strength_clip)


class LoraLoader(Node):
    """LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are denoised
    such as applying styles. Multiple LoRA nodes can be linked together."""

    display_name: ClassVar[str] = "Load LoRA"
    category: ClassVar[str] = "loaders"

    model: Model = Input(tooltip="The diffusion model the LoRA will be applied to.")
    clip: Clip = Input(tooltip="The CLIP model the LoRA will be applied to.")
    lora_name: str = Combo(_files("loras"), tooltip="The name of the LoRA.")
    strength_model: float = Input(1.0, **LORA_STRENGTH, tooltip="How strongly to modify the diffusion model. This value can be negative.")
    strength_clip: float = Input(1.0, **LORA_STRENGTH, tooltip="How strongly to modify the CLIP model. This value can be negative.")

    class Outputs(NodeOutputs):
        model: Model = Output(tooltip="The modified diffusion model.")
        clip: Clip = Output(tooltip="The modified CLIP model.")

    def run(self, ctx: NodeContext) -> LoraLoader.Outputs:
        model, clip = _apply_lora(ctx, self.model, self.clip, self.lora_name, self.strength_model, self.strength_clip)
        assert model is not None and clip is not None
        return self.Outputs(model=model, clip=clip)


class LoraLoaderModelOnly(Node):
    """LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are denoised
    such as applying styles. Multiple LoRA nodes can be linked together."""

    category: ClassVar[str] = "loaders"

    model: Model = Input()
    lora_name: str = Combo(_files("loras"))
    strength_model: float = Input(1.0, **LORA_STRENGTH)

    class Outputs(NodeOutputs):
        model: Model = Output(tooltip="The modified diffusion model.")

    def run(self, ctx: NodeContext) -> LoraLoaderModelOnly.Outputs:
        model, _ = _apply_lora(ctx, self.model, None, self.lora_name, self.strength_model, 0.0)
        assert model is not None
        return self.Outputs(model=model)


class CLIPSetLastLayer(Node):
    """Chooses which CLIP layer the prompt is encoded from (-1 = last, -2 = penultimate, …: "clip skip")."""

    display_name: ClassVar[str] = "CLIP Set Last Layer"
    category: ClassVar[str] = "conditioning"

    clip: Clip = Input()
    stop_at_clip_layer: int = Input(-1, min=-24, max=-1, step=1)

    class Outputs(NodeOutputs):
        clip: Clip = Output()

    def run(self, ctx: NodeContext) -> CLIPSetLastLayer.Outputs:
        clip = replace(self.clip, skip_layers=self.stop_at_clip_layer,
                       identity=f"{self.clip.identity}+skip:{self.stop_at_clip_layer}")
        return self.Outputs(clip=clip)


class UNETLoader(Node):
    """Loads a diffusion model (UNet only) from the diffusion_models folder."""

    display_name: ClassVar[str] = "Load Diffusion Model"
    category: ClassVar[str] = "advanced/loaders"

    unet_name: str = Combo(_files("diffusion_models"))
    weight_dtype: str = Combo(WEIGHT_DTYPES)

    class Outputs(NodeOutputs):
        model: Model = Output()

    def run(self, ctx: NodeContext) -> UNETLoader.Outputs:
        path = _resolve(ctx, "diffusion_models", self.unet_name)
        with _model_errors("diffusion model", self.unet_name):
            try:
                model = _library(ctx).manager.load_unet(path, self.weight_dtype)
            except ValueError as exc:
                if type(exc) is ValueError:
                    raise NodeInputError(str(exc)) from exc
                raise
        return self.Outputs(model=model)


class DiffusersLoader(Node):
    """Loads a diffusers-format pipeline folder (model_index.json, unet/, vae/, text_encoder/ …) from the
    diffusers folder, offline."""

    category: ClassVar[str] = "advanced/loaders/deprecated"

    model_path: str = Combo(_files("diffusers"))

    class Outputs(NodeOutputs):
        model: Model = Output()
        clip: Clip = Output()
        vae: Vae = Output()

    def run(self, ctx: NodeContext) -> DiffusersLoader.Outputs:
        path = _resolve(ctx, "diffusers", self.model_path)
        with _model_errors("diffusers folder", self.model_path):
            model, clip, vae = _library(ctx).manager.load_checkpoint(path)
        return self.Outputs(model=model, clip=_with_embeddings(ctx, clip), vae=vae)


def pack() -> NodePack:
    return NodePack(
        name="loaders",
        nodes=(CheckpointLoaderSimple, VAELoader, LoraLoader, LoraLoaderModelOnly, CLIPSetLastLayer, UNETLoader,
               DiffusersLoader),
    )
