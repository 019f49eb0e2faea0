"""The template store: bundled templates (``workflows/``, read-only) and user templates
(``<data_dir>/templates/``, writable).

Every write goes to a temporary file in the same directory, is flushed to disk, then renamed over
the target (``os.replace``), so a template is never left half-written. Each template has an ETag
(a hash of its bytes); updates, renames and deletes given ``if_match`` fail with 412 when the
template changed since the client read it (optimistic concurrency). A lock file serialises the
compare-and-write step across threads and processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphengine.templates.document import Template, parse_template_bytes
from graphengine.templates.errors import (
    InvalidTemplate,
    InvalidTemplateName,
    StoreError,
    TemplateConflict,
    TemplateExists,
    TemplateNotFound,
    TemplateReadOnly,
    TemplateTooLarge,
)

logger = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "workflows"
DEFAULT_MAX_BYTES = 2 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,79}")
_LOCK_NAME = ".lock"


@dataclass(frozen=True)
class StoredTemplate:
    template: Template
    etag: str
    bundled: bool

    @property
    def name(self) -> str:
        return self.template.name

    def to_json(self) -> dict[str, Any]:
        return self.template.to_json() | {"bundled": self.bundled, "etag": self.etag}


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def etag_matches(if_match: str, current: str) -> bool:
    """RFC 9110 If-Match (weak comparison is fine for whole documents): ``*`` or a listed tag."""
    if if_match.strip() == "*":
        return True
    tags = [tag.strip().removeprefix("W/") for tag in if_match.split(",")]
    return current in tags


def check_name(name: Any) -> str:
    """A template name: letters, digits, space, ``_ . -``; starts with a letter or digit; ≤ 80 chars."""
    if not isinstance(name, str) or not name:
        raise InvalidTemplateName(str(name), "a name is required")
    if not _NAME.fullmatch(name):
        raise InvalidTemplateName(
            name, "use letters, digits, spaces, '_', '.' or '-', starting with a letter or digit (at most 80)"
        )
    if ".." in name or name.endswith((".", " ")):
        raise InvalidTemplateName(name, "no '..' and no trailing dot or space")
    return name


class TemplateStore:
    """Bundled + user templates. Construct one per data directory (cheap; holds no open files)."""

    def __init__(self, user_dir: Path, bundled_dir: Path | None = BUNDLED_DIR, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.user_dir = Path(user_dir)
        self.bundled_dir = Path(bundled_dir) if bundled_dir is not None else None
        self.max_bytes = max_bytes

    @classmethod
    def for_data_dir(cls, data_dir: Path, **kwargs: Any) -> TemplateStore:
        return cls(Path(data_dir) / "templates", **kwargs)

    # --- reading ---

    def names(self) -> list[str]:
        """All template names: bundled first, then user templates, each sorted."""
        return [*self._names_in(self.bundled_dir), *(n for n in self._names_in(self.user_dir) if not self._is_bundled(n))]

    def list(self) -> list[StoredTemplate | tuple[str, StoreError]]:
        """Every template; a user file that cannot be read is returned as ``(name, error)``."""
        items: list[StoredTemplate | tuple[str, StoreError]] = []
        for name in self.names():
            try:
                items.append(self.get(name))
            except StoreError as exc:
                logger.warning("template %s cannot be read: %s", name, exc)
                items.append((name, exc))
        return items

    def get(self, name: str) -> StoredTemplate:
        check_name(name)
        bundled = self._is_bundled(name)
        path = self._bundled_path(name) if bundled else self._user_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TemplateNotFound(name) from None
        if len(data) > self.max_bytes:
            raise TemplateTooLarge(len(data), self.max_bytes)
        template = parse_template_bytes(data, name=name)
        return StoredTemplate(template.renamed(name), etag_of(data), bundled)

    def is_bundled(self, name: str) -> bool:
        return self._is_bundled(check_name(name))

    def exists(self, name: str) -> bool:
        check_name(name)
        return self._is_bundled(name) or self._user_path(name).is_file()

    # --- writing (user templates only) ---

    def create(self, template: Template) -> StoredTemplate:
        """Store a new user template; 409 if the name is taken (bundled or user)."""
        name = check_name(template.name)
        with self._locked():
            if self.exists(name):
                raise TemplateExists(name)
            return self._write(template)

    def save(self, name: str, template: Template, *, if_match: str | None = None) -> StoredTemplate:
        """Create or replace user template ``name``; renames it when ``template.name`` differs.

        With ``if_match``, the stored template must still have that ETag (else 412); without it a
        missing template is created and an existing one overwritten.
        """
        check_name(name)
        new_name = check_name(template.name or name)
        if self._is_bundled(name):
            raise TemplateReadOnly(name)
        with self._locked():
            path = self._user_path(name)
            current = etag_of(path.read_bytes()) if path.is_file() else None
            if if_match is not None and (current is None or not etag_matches(if_match, current)):
                if current is None:
                    raise TemplateNotFound(name)
                raise TemplateConflict(name, current)
            if new_name != name:
                if self.exists(new_name):
                    raise TemplateExists(new_name)
                if current is None:
                    raise TemplateNotFound(name)
            stored = self._write(template.renamed(new_name))
            if new_name != name:
                path.unlink()
            return stored

    def rename(self, name: str, new_name: str, *, if_match: str | None = None) -> StoredTemplate:
        stored = self.get(name)
        if stored.bundled:
            raise TemplateReadOnly(name)
        return self.save(name, stored.template.renamed(new_name), if_match=if_match or stored.etag)

    def delete(self, name: str, *, if_match: str | None = None) -> None:
        check_name(name)
        if self._is_bundled(name):
            raise TemplateReadOnly(name)
        with self._locked():
            path = self._user_path(name)
            if not path.is_file():
                raise TemplateNotFound(name)
            if if_match is not None:
                current = etag_of(path.read_bytes())
                if not etag_matches(if_match, current):
                    raise TemplateConflict(name, current)
            path.unlink()

    def import_bytes(self, data: bytes, *, name: str | None = None, description: str | None = None) -> StoredTemplate:
        """Import an uploaded template file or API-format workflow as a new user template."""
        if len(data) > self.max_bytes:
            raise TemplateTooLarge(len(data), self.max_bytes)
        template = parse_template_bytes(data)
        final_name = name or template.name
        if not final_name:
            raise InvalidTemplateName("", "give the imported template a name")
        template = Template(
            name=final_name,
            workflow=template.workflow,
            description=description if description is not None else template.description,
            defaults=template.defaults,
        )
        return self.create(template)

    # --- internals ---

    def _write(self, template: Template) -> StoredTemplate:
        data = template.to_bytes()
        if len(data) > self.max_bytes:
            raise TemplateTooLarge(len(data), self.max_bytes)
        path = self._user_path(template.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        return StoredTemplate(template, etag_of(data), bundled=False)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.user_dir.mkdir(parents=True, exist_ok=True)
        with open(self.user_dir / _LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _user_path(self, name: str) -> Path:
        from graphengine.files import PathRejected, confine

        try:
            return confine(self.user_dir, f"{check_name(name)}.json")
        except PathRejected as exc:
            raise InvalidTemplateName(name, str(exc)) from None

    def _bundled_path(self, name: str) -> Path:
        assert self.bundled_dir is not None
        return self.bundled_dir / f"{name}.json"

    def _is_bundled(self, name: str) -> bool:
        return self.bundled_dir is not None and self._bundled_path(name).is_file()

    @staticmethod
    def _names_in(directory: Path | None) -> list[str]:
        if directory is None or not directory.is_dir():
            return []
        names = []
        for entry in directory.iterdir():
            if entry.suffix == ".json" and entry.is_file() and _NAME.fullmatch(entry.stem) and ".." not in entry.stem:
                names.append(entry.stem)
        return sorted(names)


__all__ = ["BUNDLED_DIR", "StoredTemplate", "TemplateStore", "check_name", "etag_of", "etag_matches", "InvalidTemplate"]
