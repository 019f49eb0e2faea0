"""Model files as A1111 clients name them: titles, short hashes, and name resolution.

A1111 identifies a checkpoint by ``title`` ("name.safetensors [abcdef1234]" once hashed), by
``model_name`` (the stem) or by file name; clients send any of these, with or without the hash
suffix. Titles here are the file names relative to the folder (stable whether or not a hash is known);
the ``hash``/``sha256`` fields come from a small persistent cache, so listing never re-reads large
files. Hashes of files up to ``hash_on_listing_bytes`` are computed when first listed; larger files
are hashed by ``refresh-checkpoints``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphengine.files import file_sha256

logger = logging.getLogger(__name__)

HASH_CACHE_FILE = "a1111_hashes.json"
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]\s*$")


class UnknownModel(LookupError):
    """A model name that matches no file of its kind."""

    def __init__(self, kind: str, name: str, available: list[str]):
        self.kind, self.name, self.available = kind, name, available
        shown = ", ".join(available[:20]) or "none installed"
        super().__init__(f"{kind} {name!r} not found (available: {shown})")


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


class HashCache:
    """sha256 of model files keyed by (path, size, mtime), persisted as JSON; thread-safe."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            self._entries: dict[str, dict[str, Any]] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self._entries = {}

    @staticmethod
    def _stamp(file: Path) -> tuple[int, int] | None:
        try:
            stat = file.stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def get(self, file: Path) -> str | None:
        stamp = self._stamp(file)
        with self._lock:
            entry = self._entries.get(str(file))
        if entry and stamp and [entry.get("size"), entry.get("mtime_ns")] == list(stamp):
            return entry.get("sha256")
        return None

    def compute(self, file: Path) -> str | None:
        cached = self.get(file)
        if cached:
            return cached
        stamp = self._stamp(file)
        if stamp is None:
            return None
        try:
            digest = file_sha256(file)
        except OSError as exc:
            logger.warning("cannot hash %s: %s", file, exc)
            return None
        with self._lock:
            self._entries[str(file)] = {"size": stamp[0], "mtime_ns": stamp[1], "sha256": digest}
            self._save()
        return digest

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".a1111_hashes.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._entries, handle)
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot save %s: %s", self.path, exc)


@dataclass(frozen=True)
class ModelEntry:
    """One model file as ``/sdapi/v1/sd-models`` (and friends) report it."""

    kind: str
    name: str  # relative file name, what our loader nodes take
    sha256: str | None

    @property
    def short_hash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        return self.name

    @property
    def model_name(self) -> str:
        return _stem(self.name)


class ModelCatalog:
    """Lists and resolves model files of the environment's model library."""

    def __init__(self, models: Any, hashes: HashCache, *, hash_on_listing_bytes: int = 256 * 1024 * 1024):
        self.models = models
        self.hashes = hashes
        self.hash_on_listing_bytes = hash_on_listing_bytes

    def names(self, kind: str) -> list[str]:
        if self.models is None:
            return []
        try:
            return list(self.models.list(kind))
        except (KeyError, ValueError, OSError):
            return []

    def path(self, kind: str, name: str) -> Path | None:
        try:
            return Path(self.models.resolve(kind, name))
        except Exception:  # noqa: BLE001 - a file that vanished or escapes is simply not listed
            return None

    def entries(self, kind: str, *, compute_small: bool = True, compute_all: bool = False) -> list[ModelEntry]:
        """Every file of a kind; hashes from the cache, computing small (or all) missing ones."""
        result = []
        for name in self.names(kind):
            path = self.path(kind, name)
            digest = None
            if path is not None:
                digest = self.hashes.get(path)
                if digest is None and (compute_all or (compute_small and self._small(path))):
                    digest = self.hashes.compute(path)
            result.append(ModelEntry(kind=kind, name=name, sha256=digest))
        return result

    def _small(self, path: Path) -> bool:
        try:
            return path.stat().st_size <= self.hash_on_listing_bytes
        except OSError:
            return False

    def entry(self, kind: str, name: str) -> ModelEntry:
        """One file's entry, hashing it now if it is small and not hashed yet."""
        path = self.path(kind, name)
        digest = None
        if path is not None:
            digest = self.hashes.get(path) or (self.hashes.compute(path) if self._small(path) else None)
        return ModelEntry(kind=kind, name=name, sha256=digest)

    def resolve(self, kind: str, requested: str) -> str:
        """The file name for a client's spelling: title, title with "[hash]", file name, stem, or hash."""
        available = self.names(kind)
        wanted = requested.strip()
        if wanted in available:
            return wanted
        without_hash = _HASH_SUFFIX.sub("", wanted)
        normalized = without_hash.replace("\\", "/").casefold()
        for name in available:
            if name.casefold() == normalized:
                return name
        for name in available:  # by base name or stem, wherever in the folder tree
            base = name.rsplit("/", 1)[-1].casefold()
            if normalized in (base, _stem(name).casefold()) or _stem(normalized) == _stem(name).casefold():
                return name
        suffix = _HASH_SUFFIX.search(wanted)
        digest = (suffix.group(0).strip(" []") if suffix else wanted).casefold()
        if re.fullmatch(r"[0-9a-f]{8,64}", digest):
            for name in available:
                path = self.path(kind, name)
                known = self.hashes.get(path) if path else None
                if known and known.startswith(digest):
                    return name
        raise UnknownModel(kind, requested, available)
