"""Reading request bodies the way real clients send them.

``read_json`` parses the body as JSON whatever the Content-Type (SillyTavern sends text/plain,
comfy-cli form-urlencoded, comfy-catapult octet-stream). Bodies that are form-encoded key=value pairs
(comfy-catapult's ``/queue`` and ``/free``) can be read with ``read_json_or_form``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request

_MISSING = object()


class BadBody(HTTPException):
    """400 with ComfyUI's error object; ``kind`` is the error ``type``."""

    def __init__(self, kind: str, message: str):
        super().__init__(400, message)
        self.kind = kind


def _empty_body(empty: Any) -> Any:
    """What an empty body reads as: ``empty`` where the caller gave one, else a 400."""
    if empty is _MISSING:
        raise BadBody("invalid_json", "request body is empty; a JSON document was expected")
    return empty


async def read_json(request: Request, *, empty: Any = _MISSING) -> Any:
    """The body parsed as JSON; ``empty`` is returned for an empty body (else 400)."""
    raw = await request.body()
    if not raw.strip():
        return _empty_body(empty)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody("invalid_json", f"request body is not valid JSON: {exc}") from None


async def read_json_or_form(request: Request, *, empty: Any = _MISSING) -> Any:
    """JSON, or ``a=1&b=2`` form pairs turned into a dict (values "true"/"false" become booleans)."""
    raw = await request.body()
    if not raw.strip():
        return _empty_body(empty)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        pairs = parse_qs(raw.decode("utf-8"), strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        raise BadBody("invalid_json", "request body is neither JSON nor form-encoded") from None
    form: dict[str, Any] = {}
    for key, values in pairs.items():
        converted = [{"true": True, "false": False}.get(v.lower(), v) for v in values]
        form[key] = converted if key == "delete" else converted[-1]
    return form


def require_object(value: Any, what: str = "request body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadBody("invalid_request", f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def optional_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise BadBody("invalid_request", f"{key!r} must be a boolean")


def string_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadBody("invalid_request", f"{key!r} must be a list of strings")
    return value


def int_query(request: Request, key: str, default: int | None = None, minimum: int | None = None) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadBody("invalid_request", f"query parameter {key!r} must be an integer") from None
    if minimum is not None and value < minimum:
        raise BadBody("invalid_request", f"query parameter {key!r} must be at least {minimum}")
    return value


def bool_query(request: Request, key: str, default: bool = False) -> bool:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    return raw.lower() in ("true", "1", "yes")
