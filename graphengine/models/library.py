"""The model library: ComfyUI's model folders under one models directory, plus the loaded-model cache.

``ModelLibrary`` answers "which checkpoints are there?" (``list``) and "where is this one?"
(``resolve``) for every folder kind of ComfyUI's layout, and owns the ``ModelManager`` that keeps
loaded models in memory. This module never imports torch; the manager is created on first use.

Names are confined: a name is a relative path inside one of the kind's folders. Absolute paths,
``..`` components, backslashes, control characters and hidden components are refused, and the real
path (symlinks resolved) must stay inside the folder's real path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphengine.files import PathRejected, confine
from graphengine.models.extra_paths import read_extra_paths
from graphengine.models.folders import FOLDER_KINDS, MODEL_EXTENSIONS, FolderKind, canonical_kind, folder_kind

if TYPE_CHECKING:
    from graphengine.models.manager import ModelManager

logger = logging.getLogger(__name__)


class ModelNameRejected(ValueError):
    """A model name tries to leave its folder (absolute path, ``..``, backslash, control characters…)."""


class ModelNotFound(FileNotFoundError):
    """No file of that name in the folder kind; ``available`` lists what there is."""

    def __init__(self, kind: str, name: str, available: Sequence[str]):
        self.kind = kind
        self.name = name
        self.available = list(available)
        shown = ", ".join(self.available[:20]) + (" …" if len(self.available) > 20 else "")
        super().__init__(f"{kind} file {name!r} not found; available: {shown or '(none)'}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ModelNameRejected("model name is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ModelNameRejected(f"model name {name!r} contains control characters")
    if "\\" in name:
        raise ModelNameRejected(f"model name {name!r} contains a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ModelNameRejected(f"model name {name!r} is an absolute path")
    if "%2e" in name.lower() or "%2f" in name.lower() or "%5c" in name.lower():
        raise ModelNameRejected(f"model name {name!r} contains URL-encoded path characters")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise ModelNameRejected(f"model name {name!r} is not a plain relative path")
        if part.startswith("."):
            raise ModelNameRejected(f"model name {name!r} refers to a hidden file")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


class ModelLibrary:
    """Model folders in ComfyUI's layout under ``models_dir``, plus extra folders from YAML files.

    ``ram_budget`` / ``vram_budget`` (bytes, None = automatic) bound the manager's cache of loaded models.
    """

    def __init__(
        self,
        models_dir: Path | str,
        extra_paths_configs: Sequence[Path | str] = (),
        *,
        ram_budget: int | None = None,
        vram_budget: int | None = None,
    ):
        self.models_dir = Path(models_dir).resolve()
        self._kinds: dict[str, FolderKind] = {kind.name: kind for kind in FOLDER_KINDS}
        self._roots: dict[str, list[Path]] = {
            kind.name: [self.models_dir / sub for sub in kind.subdirs] for kind in FOLDER_KINDS
        }
        for config in extra_paths_configs:
            for extra in read_extra_paths(Path(config)):
                if extra.kind not in self._kinds:
                    self._kinds[extra.kind] = FolderKind(extra.kind, (), MODEL_EXTENSIONS)
                    self._roots[extra.kind] = []
                roots = self._roots[extra.kind]
                if extra.path in roots:
                    continue
                if extra.is_default:
                    roots.insert(0, extra.path)
                else:
                    roots.append(extra.path)
        self._ram_budget = ram_budget
        self._vram_budget = vram_budget
        self._manager: ModelManager | None = None

    # --- folders ---

    def folder_kinds(self) -> list[str]:
        """Every folder kind known (ComfyUI's plus any an extra paths file added)."""
        return list(self._kinds)

    def roots(self, folder: str) -> list[Path]:
        """The folders searched for a kind, in lookup order (existing or not)."""
        return list(self._roots[self._kind(folder).name])

    def create_folders(self) -> None:
        """Create the default sub-directories of the models directory (ComfyUI's empty layout)."""
        for kind in FOLDER_KINDS:
            for sub in kind.subdirs:
                (self.models_dir / sub).mkdir(parents=True, exist_ok=True)

    def list(self, folder: str) -> list[str]:
        """Relative names (``/``-separated) of the files of a kind, sorted, without duplicates."""
        kind = self._kind(folder)
        names: set[str] = set()
        for root in self._roots[kind.name]:
            names.update(self._scan(root, kind))
        return sorted(names)

    def resolve(self, folder: str, name: str) -> Path:
        """The real path of ``name`` in the first folder of its kind that has it.

        Raises ``ModelNameRejected`` for names that try to escape, ``ModelNotFound`` (listing what is
        available) when no folder has it.
        """
        kind = self._kind(folder)
        _check_name(name)
        for root in self._roots[kind.name]:
            if not root.is_dir():
                continue
            try:
                candidate = confine(root, name)
            except PathRejected as exc:
                logger.warning("refusing %s name %r: %s", kind.name, name, exc.message)
                raise ModelNameRejected(f"{kind.name} name {name!r} refused: {exc.message}") from exc
            if candidate.is_file() or (kind.directories and candidate.is_dir()):
                return candidate
        raise ModelNotFound(kind.name, name, self.list(kind.name))

    def embedding_names(self) -> list[str]:
        """Embedding names without their extension, as ComfyUI's ``GET /embeddings`` lists them."""
        return sorted({name.rsplit(".", 1)[0] for name in self.list("embeddings")})

    def embedding_dirs(self) -> tuple[str, ...]:
        """The embeddings folders (for ``Clip.embedding_dirs`` and ``embedding:name`` lookups)."""
        return tuple(str(root) for root in self._roots["embeddings"])

    # --- loaded models ---

    @property
    def manager(self) -> ModelManager:
        """The cache of loaded models (created on first use; importing it imports torch)."""
        if self._manager is None:
            from graphengine.models.manager import ModelManager

            self._manager = ModelManager(ram_budget=self._ram_budget, vram_budget=self._vram_budget)
        return self._manager

    def free(self, unload_models: bool = False) -> None:
        """Release cached models (all of them when ``unload_models``), if any were loaded."""
        if self._manager is not None:
            if unload_models:
                self._manager.unload_all()
            else:
                self._manager.free()

    # --- internals ---

    def _kind(self, folder: str) -> FolderKind:
        name = canonical_kind(folder)
        kind = self._kinds.get(name) or folder_kind(name)
        if kind is None:
            raise KeyError(f"unknown model folder kind {folder!r}; known: {', '.join(self._kinds)}")
        return kind

    @staticmethod
    def _scan(root: Path, kind: FolderKind) -> list[str]:
        if not root.is_dir():
            return []
        real_root = root.resolve()
        found: list[str] = []
        for directory, subdirs, files in os.walk(real_root, followlinks=True):
            here = Path(directory)
            if not _inside(here.resolve(), real_root):
                subdirs[:] = []
                continue
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            relative = here.relative_to(real_root)
            if kind.directories:
                for sub in subdirs:
                    if (here / sub / "model_index.json").is_file():
                        found.append((relative / sub).as_posix())
                continue
            for filename in files:
                if filename.startswith("."):
                    continue
                if kind.extensions is not None and Path(filename).suffix.lower() not in kind.extensions:
                    continue
                if not _inside((here / filename).resolve(), real_root):
                    continue
                found.append((relative / filename).as_posix())
        return found

    def __repr__(self) -> str:
        return f"ModelLibrary({str(self.models_dir)!r})"

    def describe(self) -> dict[str, Any]:
        """Folder kind → search folders, for diagnostics (``/system_stats``-style views)."""
        return {name: [str(p) for p in roots] for name, roots in self._roots.items()}
