"""``extra_model_paths.yaml``: extra model folders, read with ComfyUI's semantics.

Each top-level section may hold ``base_path`` (``~`` and environment variables expanded; relative to
the YAML file's directory), ``is_default: true`` (its folders go first instead of last), and
``kind: path`` entries whose value may list several paths, one per line. Each path is joined to
``base_path`` or, without one, to the YAML file's directory. Legacy kind names (``unet``, ``clip``)
are accepted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from graphengine.models.folders import canonical_kind


class ExtraPathsError(ValueError):
    """An ``extra_model_paths.yaml`` file cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class ExtraFolder:
    kind: str
    path: Path
    is_default: bool  # True: searched before the models directory's own folders


def read_extra_paths(config: Path) -> list[ExtraFolder]:
    """The folders an ``extra_model_paths.yaml`` adds, in file order."""
    config = Path(config)
    try:
        text = config.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExtraPathsError(f"cannot read extra model paths file {config}: {exc.strerror or exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExtraPathsError(f"extra model paths file {config} is not valid YAML: {exc}") from exc
    if document is None:
        return []
    if not isinstance(document, dict):
        raise ExtraPathsError(f"extra model paths file {config} must map section names to settings")
    yaml_dir = config.resolve().parent
    folders: list[ExtraFolder] = []
    for section_name, section in document.items():
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ExtraPathsError(f"section {section_name!r} of {config} must be a mapping of folder kinds to paths")
        settings = dict(section)
        base_path = settings.pop("base_path", None)
        is_default = bool(settings.pop("is_default", False))
        base: Path | None = None
        if base_path is not None:
            base = Path(os.path.expandvars(os.path.expanduser(str(base_path))))
            if not base.is_absolute():
                base = yaml_dir / base
        for kind, value in settings.items():
            if value is None:
                continue
            if not isinstance(value, str):
                raise ExtraPathsError(
                    f"{config}: {section_name}.{kind} must be a path or several paths, one per line"
                )
            for line in value.split("\n"):
                entry = line.strip()
                if not entry:
                    continue
                path = Path(entry)
                if base is not None:
                    path = base / path
                elif not path.is_absolute():
                    path = yaml_dir / path
                folders.append(
                    ExtraFolder(canonical_kind(str(kind)), Path(os.path.normpath(path)), is_default)
                )
    return folders
