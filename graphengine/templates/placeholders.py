"""The placeholder vocabulary: which names are predefined, what kind of value each takes, and where a
placeholder may sit in a workflow.

A placeholder is a JSON string whose whole text is ``%name%`` (SillyTavern's quoted form,
``"seed": "%seed%"``). It is replaced, quotes included, by the JSON value. The same text inside a
longer string (``"photo of %prompt%"``) is *embedded*: left as text, as SillyTavern leaves it, and
flagged by the checker. A placeholder outside a node's ``inputs`` (in ``class_type``, ``_meta``, a
key, or inside a link) is *misplaced*.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}"
_EXACT = re.compile(rf"%({NAME_PATTERN})%")
_EMBEDDED = re.compile(rf"%({NAME_PATTERN})%")


class ValueKind(str, enum.Enum):
    """How a predefined placeholder's value is checked and converted before it is inserted."""

    TEXT = "text"  # any string
    NAME = "name"  # a model/sampler/scheduler name (string)
    INT = "int"
    FLOAT = "float"
    SEED = "seed"  # integer ≥ 0, or −1 for a fresh random seed
    CLIP_SKIP = "clip_skip"  # A1111's positive clip skip, inserted negated (ComfyUI's stop_at_clip_layer)
    IMAGE = "image"  # raw base64 image (PNG), validated by decoding


@dataclass(frozen=True)
class PredefinedPlaceholder:
    name: str
    kind: ValueKind
    description: str
    fallback: Any = None  # used when neither the request nor the template gives a value; None = required


PREDEFINED: tuple[PredefinedPlaceholder, ...] = (
    PredefinedPlaceholder("prompt", ValueKind.TEXT, "the positive prompt"),
    PredefinedPlaceholder("negative_prompt", ValueKind.TEXT, "the negative prompt", fallback=""),
    PredefinedPlaceholder("model", ValueKind.NAME, "checkpoint file name"),
    PredefinedPlaceholder("vae", ValueKind.NAME, "VAE file name"),
    PredefinedPlaceholder("sampler", ValueKind.NAME, "sampler name (euler, dpmpp_2m, …)"),
    PredefinedPlaceholder("scheduler", ValueKind.NAME, "scheduler name (normal, karras, …)"),
    PredefinedPlaceholder("steps", ValueKind.INT, "sampling steps"),
    PredefinedPlaceholder("scale", ValueKind.FLOAT, "classifier-free guidance scale (cfg)"),
    PredefinedPlaceholder("width", ValueKind.INT, "image width in pixels"),
    PredefinedPlaceholder("height", ValueKind.INT, "image height in pixels"),
    PredefinedPlaceholder("denoise", ValueKind.FLOAT, "denoising strength, 0…1"),
    PredefinedPlaceholder(
        "clip_skip", ValueKind.CLIP_SKIP, "CLIP layers to skip (1…24; inserted negated, as SillyTavern does)"
    ),
    PredefinedPlaceholder("seed", ValueKind.SEED, "noise seed; −1 picks a fresh random seed", fallback=-1),
    PredefinedPlaceholder("user_avatar", ValueKind.IMAGE, "the user's avatar, raw base64 PNG"),
    PredefinedPlaceholder("char_avatar", ValueKind.IMAGE, "the character's avatar, raw base64 PNG"),
)
PREDEFINED_BY_NAME: Mapping[str, PredefinedPlaceholder] = {p.name: p for p in PREDEFINED}


class Placement(str, enum.Enum):
    INPUT = "input"  # a node input's whole value: replaced
    NESTED = "nested"  # whole string inside a list/dict within an input (e.g. a link): replaced, flagged
    METADATA = "metadata"  # class_type, _meta or another non-input field: replaced, flagged
    KEY = "key"  # an object key: never replaced, flagged
    EMBEDDED = "embedded"  # inside a longer string: left as text, flagged


@dataclass(frozen=True)
class Occurrence:
    """Where one placeholder sits: node id, and the path inside the node (e.g. ``("inputs", "seed")``)."""

    name: str
    node_id: str
    path: tuple[str | int, ...]
    placement: Placement
    text: str = ""  # the string it sits in (for embedded occurrences)

    @property
    def input_name(self) -> str | None:
        if len(self.path) >= 2 and self.path[0] == "inputs" and isinstance(self.path[1], str):
            return self.path[1]
        return None

    @property
    def location(self) -> str:
        """Human text: ``node 3 (KSampler) input seed`` minus the class, which the caller knows."""
        where = self.input_name
        if where is not None and len(self.path) == 2:
            return f"node {self.node_id} input {where!r}"
        return f"node {self.node_id} at {'.'.join(str(p) for p in self.path) or '(node)'}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "node_id": self.node_id,
            "input": self.input_name,
            "path": list(self.path),
            "placement": self.placement.value,
        }
        if self.placement is Placement.EMBEDDED:
            data["text"] = self.text
        return data


def exact_name(value: Any) -> str | None:
    """The placeholder name if ``value`` is exactly ``%name%``, else None."""
    if isinstance(value, str):
        match = _EXACT.fullmatch(value)
        if match:
            return match.group(1)
    return None


def is_valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


def find_occurrences(workflow: Mapping[str, Any]) -> list[Occurrence]:
    """Every placeholder occurrence in an API-format workflow, in document order."""
    found: list[Occurrence] = []
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping):
            found.extend(_scan(str(node_id), (), node, Placement.METADATA))
            continue
        for key, value in node.items():
            found.extend(_scan_key(str(node_id), (), key))
            if key == "inputs" and isinstance(value, Mapping):
                for input_name, input_value in value.items():
                    found.extend(_scan_key(str(node_id), ("inputs",), input_name))
                    found.extend(_scan(str(node_id), ("inputs", input_name), input_value, Placement.INPUT))
            else:
                found.extend(_scan(str(node_id), (key,), value, Placement.METADATA))
    return found


def _scan_key(node_id: str, path: tuple[str | int, ...], key: Any) -> Iterator[Occurrence]:
    if isinstance(key, str):
        for match in _EMBEDDED.finditer(key):
            yield Occurrence(match.group(1), node_id, (*path, key), Placement.KEY, key)


def _scan(node_id: str, path: tuple[str | int, ...], value: Any, placement: Placement) -> Iterator[Occurrence]:
    if isinstance(value, str):
        name = exact_name(value)
        if name is not None:
            yield Occurrence(name, node_id, path, placement)
            return
        for match in _EMBEDDED.finditer(value):
            yield Occurrence(match.group(1), node_id, path, Placement.EMBEDDED, value)
    elif isinstance(value, list):
        inner = Placement.NESTED if placement is Placement.INPUT else placement
        for index, item in enumerate(value):
            yield from _scan(node_id, (*path, index), item, inner)
    elif isinstance(value, Mapping):
        inner = Placement.NESTED if placement is Placement.INPUT else placement
        for key, item in value.items():
            yield from _scan_key(node_id, path, key)
            yield from _scan(node_id, (*path, key), item, inner)
