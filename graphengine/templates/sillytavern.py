"""SillyTavern-exact rendering: the text substitution SillyTavern's ComfyUI source performs.

This reproduces, step by step, what SillyTavern does to a workflow file's *text* before posting it
(see ``clients.md`` §2.2), including its flaws: ``String.prototype.replaceAll`` interprets ``$&``,
``$```, ``$'`` and ``$$`` in the value, an undefined setting inserts the bare word ``undefined``.
It exists so tests can prove that graphengine renders SillyTavern's templates exactly as
SillyTavern would, and show where our tree-based ``render`` stays safe when this breaks. Use
``graphengine.templates.render`` for real work.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
PNG_PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
"""The 1×1 grayscale PNG SillyTavern inserts when it cannot fetch an avatar."""

UNDEFINED: Any = type("Undefined", (), {"__repr__": lambda self: "undefined"})()
"""JavaScript's ``undefined``: ``JSON.stringify(undefined)`` is undefined, inserted as ``undefined``."""


@dataclass
class SillyTavernSettings:
    """The image-generation settings SillyTavern substitutes (its ``extension_settings.sd``)."""

    prompt: str
    negative_prompt: str = ""
    seed: int = -1
    denoising_strength: Any = 0.7  # UNDEFINED → 1.0
    clip_skip: Any = 1  # NaN → −1
    model: Any = UNDEFINED
    vae: Any = UNDEFINED
    sampler: Any = UNDEFINED
    scheduler: Any = UNDEFINED
    steps: Any = 20
    scale: Any = 7
    width: Any = 512
    height: Any = 512
    custom_placeholders: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (find, replace)
    user_avatar: str | None = None  # raw base64 of the avatar; None: fetch failed → PNG_PIXEL
    char_avatar: str | None = None


def render_sillytavern(workflow_text: str, settings: SillyTavernSettings, *, random_unit: float | None = None) -> str:
    """The workflow text after SillyTavern's substitutions, in its order.

    ``random_unit`` stands in for ``Math.random()`` when the seed is negative (tests pass a fixed value).
    """
    text = workflow_text
    text = js_replace_all(text, '"%prompt%"', js_stringify(settings.prompt))
    text = js_replace_all(text, '"%negative_prompt%"', js_stringify(settings.negative_prompt))
    if settings.seed >= 0:
        seed = settings.seed
    else:
        unit = random_unit if random_unit is not None else _math_random()
        seed = _js_round(unit * MAX_SAFE_INTEGER)
    text = js_replace_all(text, '"%seed%"', js_stringify(seed))
    denoise = 1.0 if settings.denoising_strength is UNDEFINED else settings.denoising_strength
    text = js_replace_all(text, '"%denoise%"', js_stringify(denoise))
    clip_skip = settings.clip_skip
    clip_value = -1 if _is_nan(clip_skip) else -clip_skip
    text = js_replace_all(text, '"%clip_skip%"', js_stringify(clip_value))
    for name in ("model", "vae", "sampler", "scheduler", "steps", "scale", "width", "height"):
        text = js_replace_all(text, f'"%{name}%"', js_stringify(getattr(settings, name)))
    for find, replace in settings.custom_placeholders:
        text = js_replace_all(text, f'"%{find}%"', js_stringify(replace))
    for name in ("user_avatar", "char_avatar"):
        if f"%{name}%" in text.lower():
            avatar = getattr(settings, name)
            text = js_replace_all(text, f'"%{name}%"', js_stringify(avatar if avatar is not None else PNG_PIXEL))
    return text


def sillytavern_prompt_body(workflow_text: str) -> str:
    """The ``/prompt`` body SillyTavern's server forwards (its template literal, whitespace included)."""
    return "{\n                \"prompt\": " + workflow_text + "\n            }"


def js_replace_all(text: str, search: str, replacement: str) -> str:
    """``text.replaceAll(search, replacement)`` for a string ``search``, with JavaScript's ``$``
    patterns in ``replacement`` (``$$``, ``$&``, ``$```, ``$'``) computed on the original text."""
    if not search:
        raise ValueError("empty search strings are not used by SillyTavern")
    positions = []
    start = text.find(search)
    while start != -1:
        positions.append(start)
        start = text.find(search, start + len(search))
    if not positions:
        return text
    parts: list[str] = []
    end_of_last = 0
    for position in positions:
        parts.append(text[end_of_last:position])
        parts.append(_substitution(text, search, position, replacement))
        end_of_last = position + len(search)
    parts.append(text[end_of_last:])
    return "".join(parts)


def _substitution(text: str, matched: str, position: int, replacement: str) -> str:
    if "$" not in replacement:
        return replacement
    out: list[str] = []
    i = 0
    while i < len(replacement):
        char = replacement[i]
        if char == "$" and i + 1 < len(replacement):
            nxt = replacement[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "&":
                out.append(matched)
                i += 2
                continue
            if nxt == "`":
                out.append(text[:position])
                i += 2
                continue
            if nxt == "'":
                out.append(text[position + len(matched):])
                i += 2
                continue
        out.append(char)
        i += 1
    return "".join(out)


def js_stringify(value: Any) -> str:
    """``JSON.stringify`` for the values SillyTavern substitutes (strings, numbers, undefined)."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"SillyTavern never substitutes a {type(value).__name__}")


def js_number(value: float | int) -> str:
    """A number as JavaScript's ``Number.prototype.toString`` / ``JSON.stringify`` writes it."""
    number = float(value)
    if not math.isfinite(number):
        return "null"  # JSON.stringify(NaN) and JSON.stringify(Infinity)
    if number == 0:
        return "0"
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    text = repr(number)  # shortest round-trip digits, as JavaScript chooses them
    if "e" in text:
        mantissa, exponent = text.split("e")
        exp = int(exponent)
        if -7 < exp < 0:
            sign = "-" if mantissa.startswith("-") else ""
            digits = mantissa.lstrip("-").replace(".", "")
            return f"{sign}0.{'0' * (-exp - 1)}{digits}"
        return f"{mantissa}e{'+' if exp > 0 else '-'}{abs(exp)}"
    return text


def _js_round(value: float) -> int:
    return math.floor(value + 0.5)


def _is_nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _math_random() -> float:
    import random

    return random.SystemRandom().random()
