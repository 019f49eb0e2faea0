"""Literal coercion: ComfyUI's loose typing of constant inputs, made strict where it would be
silently wrong (deviations from ComfyUI are marked *).

* INT: ints; floats with an integral value (``20.0``; * ``20.5`` is an error instead of truncating);
  numeric strings (``"20"``, ``"20.0"``); bools (as 1/0). Python ints are unbounded, so seeds up to
  2^64−1 pass.
* FLOAT: ints, floats, numeric strings (``"0.8"``), bools; * NaN and infinities are errors.
* STRING: strings; numbers and bools are converted with ``str``; * lists/objects are errors.
* BOOLEAN: bools; * ``0``/``1``; * the strings ``"true"``/``"false"``/``"1"``/``"0"`` (any case).
  ComfyUI applies ``bool()``, which makes ``"false"`` true; we reject other values instead.
* ``"A,B"`` unions: the first member type that accepts the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from graphengine.node import ANY_TYPE


def coerce_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value
    if kind is bool:
        return int(value)
    if kind is float:
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    if kind is str:
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            number = float(text)  # raises ValueError with a clear message for non-numbers
            if not number.is_integer():
                raise ValueError(f"{value!r} is not a whole number") from None
            return int(number)
    raise TypeError(f"expected an integer, got {kind_name(value)}")


def coerce_float(value: Any) -> float:
    kind = type(value)
    if kind is float:
        number = value
    elif kind is int or kind is bool:
        number = float(value)
    elif kind is str:
        number = float(value.strip())
    else:
        raise TypeError(f"expected a number, got {kind_name(value)}")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def coerce_string(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is float or kind is bool:
        return str(value)
    raise TypeError(f"expected a string, got {kind_name(value)}")


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def coerce_bool(value: Any) -> bool:
    kind = type(value)
    if kind is bool:
        return value
    if kind is int and value in (0, 1):
        return bool(value)
    if kind is str:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (use true/false)")
    raise TypeError(f"expected a boolean, got {kind_name(value)}")


_COERCERS = {"INT": coerce_int, "FLOAT": coerce_float, "STRING": coerce_string, "BOOLEAN": coerce_bool}


def coerce_union(socket: str, value: Any) -> Any:
    last: Exception | None = None
    for member in socket.split(","):
        if member == ANY_TYPE:
            return value
        coercer = _COERCERS.get(member)
        if coercer is None:
            continue
        try:
            return coercer(value)
        except (TypeError, ValueError, OverflowError) as exc:
            last = exc
    if last is not None:
        raise last
    raise ValueError(f"{socket} inputs take a link from another node's output, not a constant")



def kind_name(value: Any) -> str:
    """How an error names a value's JSON kind: "null", "an object", "a list", or its Python type name."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__
