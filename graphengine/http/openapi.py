"""OpenAPI 3.1 document generated from the app's route table, and Swagger UI at ``/docs`` (vendored).

Every route is listed (so nothing can hide from the docs): summary and description come from the
endpoint's docstring, path parameters from the path, and anything a handler declares with
``@describe(...)``. Mounted route modules may add detail with ``openapi_paths() -> dict`` (merged in).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def describe(
    *,
    query: dict[str, str] | None = None,
    body: str | None = None,
    responses: dict[int, str] | None = None,
    tags: Iterable[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach OpenAPI detail to a handler: ``query={"name": "description"}``, ``body`` =
    "json" | "multipart" | "raw", ``responses={status: description}``."""

    def mark(handler: Callable[..., Any]) -> Callable[..., Any]:
        handler.__openapi__ = {  # type: ignore[attr-defined]
            "query": dict(query or {}),
            "body": body,
            "responses": dict(responses or {}),
            "tags": list(tags),
        }
        return handler

    return mark


def _operation(route: Route | WebSocketRoute, method: str, tag: str) -> dict[str, Any]:
    endpoint = route.endpoint
    doc = inspect.getdoc(endpoint) or ""
    summary, _, description = doc.partition("\n")
    extra: dict[str, Any] = getattr(endpoint, "__openapi__", {})
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(route.path)
    ]
    for name, text in extra.get("query", {}).items():
        params.append({"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}})
    operation: dict[str, Any] = {
        "summary": summary.strip() or f"{method} {route.path}",
        "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', route.path).strip('_') or 'root'}",
        "tags": extra.get("tags") or [tag],
        "responses": {str(k): {"description": v} for k, v in extra.get("responses", {}).items()}
        or {"200": {"description": "OK"}},
    }
    if description.strip():
        operation["description"] = description.strip()
    if params:
        operation["parameters"] = params
    body = extra.get("body")
    if body == "json":
        operation["requestBody"] = {"content": {"application/json": {"schema": {}}}}
    elif body == "multipart":
        operation["requestBody"] = {"content": {"multipart/form-data": {"schema": {"type": "object"}}}}
    elif body == "raw":
        operation["requestBody"] = {"content": {"application/octet-stream": {"schema": {}}}}
    return operation


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, BaseRoute]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(route.routes or [], prefix + route.path)
        else:
            yield prefix, route


def build_openapi(routes: Iterable[BaseRoute], extra_paths: Iterable[dict[str, Any]] = (), *, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for prefix, route in _walk(routes):
        if isinstance(route, WebSocketRoute):
            path = prefix + route.path
            op = _operation(route, "GET", "websocket")
            op["summary"] = "WebSocket: " + op["summary"]
            op["responses"] = {"101": {"description": "Switching protocols to the websocket event stream"}}
            paths.setdefault(path, {})["get"] = op
        elif isinstance(route, Route):
            path = prefix + route.path
            tag = getattr(route.endpoint, "__module__", "").rsplit(".", 1)[-1].replace("_routes", "")
            for method in sorted(route.methods or {"GET"}):
                if method == "HEAD":
                    continue
                paths.setdefault(path, {})[method.lower()] = _operation(route, method, tag)
    for more in extra_paths:
        for path, operations in more.items():
            paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "graphengine",
            "version": version,
            "description": "ComfyUI-compatible workflow server. Every route is also served under /api "
            "(except /internal/*). Authentication (when enabled) is HTTP Basic or Bearer on every route.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            }
        },
    }


async def openapi_json(request: Request) -> JSONResponse:
    """The OpenAPI document of every route of this server."""
    return JSONResponse(request.app.state.openapi)


SWAGGER_UI_DIR = Path(__file__).resolve().parent / "swagger_ui"
SWAGGER_UI_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>graphengine API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout", validatorUrl: null});
</script></body></html>
"""


async def docs_page(request: Request) -> HTMLResponse:
    """Swagger UI for every route (vendored, served from this server: no external assets)."""
    return HTMLResponse(DOCS_PAGE, headers={"Cache-Control": "no-cache"})


async def docs_asset(request: Request) -> Response:
    """Swagger UI's script and stylesheet."""
    name = request.path_params["name"]
    media_type = SWAGGER_UI_FILES.get(name)
    if media_type is None:
        return JSONResponse({"error": {"type": "not_found", "message": f"no docs asset {name!r}",
                                       "details": "", "extra_info": {}}}, status_code=404)
    return FileResponse(SWAGGER_UI_DIR / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


def routes() -> list[BaseRoute]:
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Route("/docs/{name}", docs_asset, methods=["GET"]),
    ]
