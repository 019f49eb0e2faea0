"""Checking and converting placeholder values before they are inserted.

Predefined placeholders have a kind (text, integer, seed, image, …) and are converted to it: ``"20"``
becomes ``20`` for ``steps``, ``-1`` becomes a fresh random seed, an avatar must be base64 that
decodes to an image. Custom placeholders are inserted as given (the typed mode converts them later,
from the input they land in).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from collections.abc import Callable
from typing import Any

from graphengine.templates.placeholders import PREDEFINED_BY_NAME, ValueKind

MAX_SEED = 2**64 - 1  # ComfyUI's seed inputs accept 0 … 0xffffffffffffffff
RANDOM_SEED_LIMIT = 2**53  # a random seed lies in [0, 2^53 − 1], as SillyTavern draws it
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+\-]+;base64,", re.IGNORECASE)


class ValueRejected(ValueError):
    """A value cannot be used for its placeholder; the text says why, for the user."""


def random_seed() -> int:
    """A fresh seed in [0, 2^53 − 1] (exactly representable in JavaScript clients)."""
    return secrets.randbelow(RANDOM_SEED_LIMIT)


def prepare_value(
    name: str,
    value: Any,
    *,
    max_image_pixels: int,
    seed_source: Callable[[], int] = random_seed,
) -> Any:
    """The JSON value to insert for placeholder ``name``; raises ``ValueRejected`` with the reason."""
    spec = PREDEFINED_BY_NAME.get(name)
    if spec is None:
        if value is None or isinstance(value, (str, int, float, bool)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueRejected("must be a finite number")
            return value
        raise ValueRejected("must be a string, number or boolean")
    return _CONVERTERS[spec.kind](value, max_image_pixels=max_image_pixels, seed_source=seed_source)


def _text(value: Any, **_: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueRejected(f"expected text, got {_describe(value)}")


def _int(value: Any, **_: Any) -> int:
    return parse_int(value)


def _float(value: Any, **_: Any) -> float:
    return parse_float(value)


def _seed(value: Any, *, seed_source: Callable[[], int], **_: Any) -> int:
    seed = parse_int(value)
    if seed == -1:
        return seed_source()
    if seed < 0 or seed > MAX_SEED:
        raise ValueRejected(f"seed must be −1 (random) or between 0 and {MAX_SEED}, got {seed}")
    return seed


def _clip_skip(value: Any, **_: Any) -> int:
    skip = parse_int(value)
    if 1 <= skip <= 24:
        return -skip
    if -24 <= skip <= -1:
        return skip  # already in ComfyUI's stop_at_clip_layer form
    raise ValueRejected(f"clip skip must be between 1 and 24, got {skip}")


def _image(value: Any, *, max_image_pixels: int, **_: Any) -> str:
    if not isinstance(value, str):
        raise ValueRejected(f"expected a base64 image, got {_describe(value)}")
    raw = _DATA_URL.sub("", value.strip(), count=1)
    compact = "".join(raw.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueRejected("is not valid base64") from None
    if not data:
        raise ValueRejected("is empty")
    _check_decodes(data, max_image_pixels)
    return compact


def _check_decodes(data: bytes, max_image_pixels: int) -> None:
    from graphengine.files import ImageTooLarge, decode_image_bytes  # IMAGES' decoder (imports Pillow)

    try:
        image = decode_image_bytes(data, max_image_pixels)
    except ImageTooLarge as exc:
        raise ValueRejected(f"image is too large: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image" to the user
        raise ValueRejected(f"does not decode as an image ({exc})") from None
    close = getattr(image, "close", None)
    if close is not None:
        close()


_CONVERTERS: dict[ValueKind, Callable[..., Any]] = {
    ValueKind.TEXT: _text,
    ValueKind.NAME: _text,
    ValueKind.INT: _int,
    ValueKind.FLOAT: _float,
    ValueKind.SEED: _seed,
    ValueKind.CLIP_SKIP: _clip_skip,
    ValueKind.IMAGE: _image,
}


def parse_int(value: Any) -> int:
    """An integer from an int, an integral float, or a string such as ``"20"`` / ``"20.0"``."""
    if isinstance(value, bool):
        raise ValueRejected(f"expected an integer, got {_describe(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueRejected(f"expected an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if re.fullmatch(r"[+-]?\d+\.0*", text):
            return int(text.split(".")[0])
        raise ValueRejected(f"expected an integer, got {value!r}")
    raise ValueRejected(f"expected an integer, got {_describe(value)}")


def parse_float(value: Any) -> float:
    """A finite float from a number or a numeric string such as ``"0.8"``."""
    if isinstance(value, bool):
        raise ValueRejected(f"expected a number, got {_describe(value)}")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            raise ValueRejected(f"expected a number, got {value!r}")
        result = float(text)
    else:
        raise ValueRejected(f"expected a number, got {_describe(value)}")
    if not math.isfinite(result):
        raise ValueRejected(f"expected a finite number, got {value!r}")
    return result


def parse_bool(value: Any) -> bool:
    """A boolean from true/false, 1/0, or the strings true/false/yes/no/on/off/1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
    raise ValueRejected(f"expected true or false, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return type(value).__name__ if isinstance(value, (list, dict)) else repr(value)
