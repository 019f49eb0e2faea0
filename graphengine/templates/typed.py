"""Typed mode: convert a placeholder's value to the type the receiving node input declares.

SillyTavern's custom placeholders are always JSON strings (``"0.8"``), and values typed on a
command line are strings too. When a node declares an input INT, FLOAT, BOOLEAN or STRING (read
from the registry's node declarations), a value of another type is converted here, or rejected with
a message naming the placeholder, the node and the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphengine.templates.values import ValueRejected, parse_bool, parse_float, parse_int


def declared_socket(registry: Mapping[str, Any] | None, class_type: Any, input_name: str) -> str | None:
    """The socket type node class ``class_type`` declares for ``input_name`` (None if unknown/combo)."""
    if registry is None or not isinstance(class_type, str):
        return None
    node_class = registry.get(class_type)
    if node_class is None:
        return None
    for info in getattr(node_class, "inputs_info", ()):
        if info.name == input_name:
            return info.socket
    return None


def convert_for_socket(value: Any, socket: str | None) -> Any:
    """``value`` converted for a widget of type ``socket``; raises ``ValueRejected`` if impossible."""
    if socket == "INT":
        return parse_int(value)
    if socket == "FLOAT":
        number = parse_float(value)
        return number
    if socket == "BOOLEAN":
        return parse_bool(value)
    if socket == "STRING":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        raise ValueRejected(f"expected text, got {type(value).__name__}")
    return value
