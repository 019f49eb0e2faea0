"""Small response helpers shared by the route modules: JSON errors, empty 200s, raw JSON text."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Send

JSON_TYPE = "application/json"


def empty_ok() -> Response:
    """ComfyUI's "success with no data": status 200, empty body."""
    return Response(status_code=200)


def error_body(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "details": details or message, "extra_info": {}}}


def json_error(status: int, kind: str, message: str, details: str = "", **extra: Any) -> JSONResponse:
    """``{"error": {"type", "message", "details", "extra_info"}}`` — ComfyUI's error object shape."""
    return JSONResponse({**error_body(kind, message, details), **extra}, status_code=status)


def json_text(text: str, status: int = 200) -> Response:
    """A JSON body that is already serialized (history is kept as JSON text)."""
    return Response(text, status_code=status, media_type=JSON_TYPE)


async def send_json_error(send: Send, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer from ASGI middleware (before any route ran)."""
    body = json.dumps(error_body(kind, message)).encode()
    raw_headers = [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def deny_websocket(scope: dict[str, Any], send: Send, status: int, kind: str, message: str,
                         headers: dict[str, str] | None = None) -> None:
    """Refuse a websocket handshake with an HTTP status when the server supports it, else close."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps(error_body(kind, message)).encode()
        raw_headers = [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        await send({"type": "websocket.http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
