"""The long-lived services a node may use, built once by the Engine or the server and passed in.

Nothing here imports torch: the model library is typed through a protocol and implemented in
``graphengine.models``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ModelLibrary(Protocol):
    """Model folders plus the cache of loaded models (implemented in ``graphengine.models``)."""

    def list(self, folder: str) -> list[str]:
        """Relative file names available in a model folder kind ("checkpoints", "loras", …)."""
        ...

    def resolve(self, folder: str, name: str) -> Path:
        """The confined absolute path of ``name`` in a folder kind; raises if absent or escaping."""
        ...


@dataclass(frozen=True)
class DataPaths:
    """Where inputs, outputs and temporary files live (ComfyUI's input/, output/, temp/)."""

    root: Path
    input_dir: Path
    output_dir: Path
    temp_dir: Path

    @classmethod
    def under(cls, root: Path | str) -> DataPaths:
        root = Path(root).resolve()
        return cls(root=root, input_dir=root / "input", output_dir=root / "output", temp_dir=root / "temp")

    def create(self) -> None:
        for path in (self.input_dir, self.output_dir, self.temp_dir):
            path.mkdir(parents=True, exist_ok=True)

    def directory(self, kind: str) -> Path:
        """The root for a ComfyUI file ``type`` ("input", "output", "temp"); ValueError otherwise."""
        roots = {"input": self.input_dir, "output": self.output_dir, "temp": self.temp_dir}
        if kind not in roots:
            raise ValueError(f"unknown file type {kind!r}; expected one of input, output, temp")
        return roots[kind]


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = 64 * 1024 * 1024  # decoded images larger than this are refused
    max_upload_bytes: int = 100 * 1024 * 1024  # ComfyUI's --max-upload-size default (100 MB)
    max_latent_side: int = 16384  # pixels, for EmptyLatentImage and friends


@dataclass(frozen=True)
class PreviewSettings:
    method: str = "none"  # none | auto | latent2rgb
    max_size: int = 512


def default_data_dir() -> Path:
    return Path(os.environ.get("GRAPHENGINE_DATA_DIR", "data")).resolve()


def default_models_dir(data_dir: Path | None = None) -> Path:
    configured = os.environ.get("GRAPHENGINE_MODELS_DIR")
    if configured:
        return Path(configured).resolve()
    return ((data_dir or default_data_dir()).parent / "models").resolve()


@dataclass(frozen=True)
class Environment:
    paths: DataPaths
    models: ModelLibrary | None = None
    limits: Limits = field(default_factory=Limits)
    preview: PreviewSettings = field(default_factory=PreviewSettings)
    write_metadata: bool = True  # PNG text chunks (ComfyUI --disable-metadata turns this off)
    extras: Sequence[Any] = ()
