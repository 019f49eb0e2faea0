"""ComfyUI's model folder kinds: which sub-directories of ``models/`` each kind reads and which files count.

Pure data plus two tiny helpers; no torch. The table follows ComfyUI's ``folder_paths`` registry so a
ComfyUI ``models/`` directory (or its ``extra_model_paths.yaml``) works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})


@dataclass(frozen=True)
class FolderKind:
    """One kind of model file: its default sub-directories of ``models/`` and accepted extensions.

    ``extensions`` None accepts any file; ``directories`` True lists folders (diffusers pipelines).
    """

    name: str
    subdirs: tuple[str, ...]
    extensions: frozenset[str] | None = MODEL_EXTENSIONS
    directories: bool = False


FOLDER_KINDS: tuple[FolderKind, ...] = (
    FolderKind("checkpoints", ("checkpoints",)),
    FolderKind("configs", ("configs",), frozenset({".yaml"})),
    FolderKind("loras", ("loras",)),
    FolderKind("vae", ("vae",)),
    FolderKind("text_encoders", ("text_encoders", "clip")),
    FolderKind("diffusion_models", ("unet", "diffusion_models")),
    FolderKind("clip_vision", ("clip_vision",)),
    FolderKind("style_models", ("style_models",)),
    FolderKind("embeddings", ("embeddings",)),
    FolderKind("diffusers", ("diffusers",), None, directories=True),
    FolderKind("vae_approx", ("vae_approx",)),
    FolderKind("controlnet", ("controlnet", "t2i_adapter")),
    FolderKind("gligen", ("gligen",)),
    FolderKind("upscale_models", ("upscale_models",)),
    FolderKind("hypernetworks", ("hypernetworks",)),
    FolderKind("photomaker", ("photomaker",)),
    FolderKind("classifiers", ("classifiers",), None),
    FolderKind("model_patches", ("model_patches",)),
    FolderKind("audio_encoders", ("audio_encoders",)),
)

LEGACY_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}


def canonical_kind(name: str) -> str:
    """The folder kind a (possibly legacy) name refers to: ``unet`` → ``diffusion_models``, ``clip`` → ``text_encoders``."""
    return LEGACY_ALIASES.get(name, name)


def folder_kind(name: str) -> FolderKind | None:
    name = canonical_kind(name)
    for kind in FOLDER_KINDS:
        if kind.name == name:
            return kind
    return None
