"""Admin routes for downstream image servers, compatible with sd-proxy-server.

``POST /admin/register/image`` (plain-text body = the server's base URL),
``POST /admin/unregister/image``, ``GET|POST /admin/servers`` → ``{"image": [urls], "servers": [...]}``.
They need the admin credential (``Authorization: Bearer <admin token>`` or ``X-Admin-Token``) when an
admin token is configured; without one, only authenticated users (auth on) or local clients (auth off).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from graphengine.a1111.service import A1111Service
from graphengine.downstream.addresses import AddressRefused
from graphengine.downstream.registry import DownstreamRegistry



def registry_of(app: Any) -> DownstreamRegistry:
    """The server's downstream registry (built on first use from the server config)."""
    a1111 = A1111Service.of(app)
    if a1111.downstream is None:
        config = a1111.services.config
        a1111.downstream = DownstreamRegistry(
            allow_link_local=config.downstream_allow_link_local, health_interval=config.downstream_health_interval
        )
    return a1111.downstream


async def _url_from_body(request: Request) -> str:
    raw = (await request.body()).decode("utf-8", "replace").strip()
    if raw.startswith(("{", '"')):
        try:
            data = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(data, str):
            return data
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            return data["url"]
    return raw


async def register_image(request: Request) -> Response:
    """Register a downstream image server (body: its base URL as plain text)."""
    request.app.state.services.gate.require_admin(request)
    try:
        server = await registry_of(request.app).register(await _url_from_body(request))
    except AddressRefused as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    return JSONResponse({"message": "URL registered successfully", "url": server.url, "healthy": server.healthy})


async def unregister_image(request: Request) -> Response:
    """Unregister a downstream image server (body: its base URL as plain text)."""
    request.app.state.services.gate.require_admin(request)
    url = registry_of(request.app).unregister(await _url_from_body(request))
    if url is None:
        return JSONResponse({"detail": "that URL is not registered"}, status_code=404)
    return JSONResponse({"message": "URL unregistered successfully", "url": url})


async def list_servers(request: Request) -> Response:
    """Registered downstream servers: {"image": [urls], "servers": [{url, healthy, in_flight, …}]}."""
    request.app.state.services.gate.require_admin(request)
    servers = registry_of(request.app).servers()
    return JSONResponse({"image": [s.url for s in servers], "servers": [s.to_json() for s in servers]})


def routes() -> list[BaseRoute]:
    return [
        Route("/admin/register/image", register_image, methods=["POST"]),
        Route("/admin/unregister/image", unregister_image, methods=["POST"]),
        Route("/admin/servers", list_servers, methods=["GET", "POST"]),
    ]


def openapi_paths() -> dict[str, Any]:
    text_body = {"required": True, "content": {"text/plain": {"schema": {"type": "string", "example": "http://127.0.0.1:7860"}}}}
    admin = [{"bearer": []}]
    servers_schema = {
        "type": "object",
        "properties": {"image": {"type": "array", "items": {"type": "string"}}, "servers": {"type": "array", "items": {"type": "object"}}},
    }
    message = {"type": "object", "properties": {"message": {"type": "string"}, "url": {"type": "string"}}}
    def op(summary: str, body: bool, schema: dict[str, Any], op_id: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "summary": summary,
            "operationId": op_id,
            "tags": ["admin"],
            "security": admin,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
                "400": {"description": "The URL is refused (bad scheme, link-local or metadata address)."},
                "401": {"description": "Admin credential missing or wrong."},
            },
        }
        if body:
            result["requestBody"] = text_body
        return result
    return {
        "/admin/register/image": {"post": op("Register a downstream image server", True, message, "admin_register_image")},
        "/admin/unregister/image": {"post": op("Unregister a downstream image server", True, message, "admin_unregister_image")},
        "/admin/servers": {
            "get": op("List downstream image servers", False, servers_schema, "admin_servers_get"),
            "post": op("List downstream image servers", False, servers_schema, "admin_servers_post"),
        },
    }
