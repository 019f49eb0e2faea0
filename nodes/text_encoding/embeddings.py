"""Textual-inversion embeddings: find ``embedding:name`` in the embedding folders and load its vectors.

Names are looked up as ComfyUI does: the exact name, then with ``.safetensors``, ``.pt`` and ``.bin``
appended, in each folder in order; a name may contain ``/`` for a subfolder but never leaves its
folder. Files hold one or more vectors per text encoder:

* SD1/SD2 files: a single tensor (``emb_params``, kohya) or A1111's ``string_to_param`` dict (``.pt``);
* SDXL files: one tensor per encoder, keyed ``clip_l`` and ``clip_g``.

``.pt``/``.bin`` files are pickles: loaded (weights only) only when pickle loading is allowed
(``GRAPHENGINE_ALLOW_PICKLE=1``), otherwise refused with a clear error, like any other unusable file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graphengine.files import PathRejected, confine
from graphengine.models.safetensors_io import CheckpointError, load_state_dict, pickle_allowed
from nodes.text_encoding.parser import PromptError

EXTENSIONS = (".safetensors", ".pt", ".bin")
_PICKLE_EXTENSIONS = (".pt", ".bin")
MAX_VECTORS = 75  # an embedding longer than one window cannot be laid out by CLIP anyway


class EmbeddingError(PromptError):
    """An embedding file exists but cannot be used (corrupt, pickle refused, wrong width, …)."""


@dataclass(frozen=True)
class EmbeddingFolders:
    """Where ``embedding:name`` is looked up, and whether pickle files may be loaded."""

    directories: tuple[Path, ...]
    allow_pickle: bool | None = None  # None: GRAPHENGINE_ALLOW_PICKLE decides

    def find(self, name: str) -> Path | None:
        """The file an embedding name refers to, or None when no folder holds it."""
        for directory in self.directories:
            if not directory.is_dir():
                continue
            for candidate in (name, *(name + ext for ext in EXTENSIONS)):
                try:
                    path = confine(directory, candidate)
                except PathRejected as exc:
                    raise EmbeddingError(f"embedding name {name!r} is not allowed: {exc.message}") from None
                if path.is_file():
                    return path
        return None

    def load(self, name: str, *, key: str, width: int) -> torch.Tensor | None:
        """The vectors ``[n, width]`` (float32) of embedding ``name`` for the text encoder ``key``
        ("clip_l", "clip_g", "clip_h"), or None when the embedding does not exist."""
        path = self.find(name)
        if path is None:
            return None
        tensors = self._read(path)
        vectors = _pick_vectors(tensors, key=key, width=width, path=path)
        if vectors.shape[0] == 0 or vectors.shape[0] > MAX_VECTORS:
            raise EmbeddingError(f"embedding {path.name} holds {vectors.shape[0]} vectors; 1 to {MAX_VECTORS} are usable")
        if not torch.isfinite(vectors).all():
            raise EmbeddingError(f"embedding {path.name} contains NaN or infinite values")
        return vectors.float()

    def _read(self, path: Path) -> Mapping[str, Any]:
        suffix = path.suffix.lower()
        if suffix in _PICKLE_EXTENSIONS:
            if not pickle_allowed(self.allow_pickle):
                raise EmbeddingError(
                    f"embedding {path.name} is a pickle file and pickle loading is off; convert it to "
                    ".safetensors or set GRAPHENGINE_ALLOW_PICKLE=1"
                )
            try:
                loaded = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises many types for a bad pickle
                raise EmbeddingError(f"embedding {path.name} cannot be loaded: {exc}") from exc
            if not isinstance(loaded, Mapping):
                raise EmbeddingError(f"embedding {path.name} does not hold a dictionary of tensors")
            return loaded
        try:
            return load_state_dict(path)
        except CheckpointError as exc:
            raise EmbeddingError(f"embedding {exc}") from exc


def _pick_vectors(tensors: Mapping[str, Any], *, key: str, width: int, path: Path) -> torch.Tensor:
    """The tensor meant for one text encoder: A1111's ``string_to_param``, then the encoder's key,
    then the only tensor of matching width. Anything else is an error naming the file."""
    nested = tensors.get("string_to_param")
    if isinstance(nested, Mapping) and nested:
        candidates = {k: v for k, v in nested.items() if isinstance(v, torch.Tensor)}
    elif isinstance(tensors.get(key), torch.Tensor):
        candidates = {key: tensors[key]}
    else:
        candidates = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    shaped = {k: v.reshape(-1, v.shape[-1]) for k, v in candidates.items() if v.ndim in (1, 2) and v.numel() > 0}
    matching = [v for v in shaped.values() if v.shape[-1] == width]
    if matching:
        return matching[0]
    found = ", ".join(f"{k} {tuple(v.shape)}" for k, v in candidates.items()) or "no tensors"
    raise EmbeddingError(
        f"embedding {path.name} has no vectors of width {width} for the {key} text encoder "
        f"(found {found}); is it made for a different model family?"
    )


def folders_from(directories: Sequence[str | Path]) -> EmbeddingFolders:
    return EmbeddingFolders(tuple(Path(d) for d in directories))
