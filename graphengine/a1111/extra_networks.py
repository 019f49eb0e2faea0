"""A1111's extra-network prompt syntax: ``<lora:name:weight>`` tags inside the prompt text.

``<lora:name>`` (weight 1), ``<lora:name:0.8>`` (model and text encoder weight) and
``<lora:name:0.8:0.5>`` (text encoder weight, then model weight, A1111's ``te``/``unet`` order) are
recognised; ``lyco`` is accepted as a synonym. Tags are removed from the text the text encoder sees.
Other extra-network kinds (``<hypernet:…>``) are left in the text untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAG = re.compile(r"<(lora|lyco):([^:>]+)(?::([^:>]*))?(?::([^:>]*))?>", re.IGNORECASE)


class ExtraNetworkSyntaxError(ValueError):
    """A ``<lora:…>`` tag whose weights are not numbers."""


@dataclass(frozen=True)
class LoraTag:
    name: str
    model_weight: float
    clip_weight: float


def _weight(text: str | None, default: float, tag: str) -> float:
    if text is None or not text.strip():
        return default
    try:
        return float(text)
    except ValueError:
        raise ExtraNetworkSyntaxError(f"weight {text!r} in {tag} is not a number") from None


def extract_loras(prompt: str) -> tuple[str, list[LoraTag]]:
    """The prompt without its LoRA tags, and the tags in order of appearance."""
    tags: list[LoraTag] = []

    def take(match: re.Match[str]) -> str:
        name = match.group(2).strip()
        first = _weight(match.group(3), 1.0, match.group(0))
        second = match.group(4)
        if second is None:
            tags.append(LoraTag(name=name, model_weight=first, clip_weight=first))
        else:
            tags.append(LoraTag(name=name, model_weight=_weight(second, first, match.group(0)), clip_weight=first))
        return ""

    text = _TAG.sub(take, prompt)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return re.sub(r"[ \t]+,", ",", text).strip(), tags
