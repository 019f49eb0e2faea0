"""OpenAPI 3.1 document generated from the app's route table, and a self-contained ``/docs`` page.

Every route is listed (so nothing can hide from the docs): summary and description come from the
endpoint's docstring, path parameters from the path, and anything a handler declares with
``@describe(...)``. Mounted route modules may add detail with ``openapi_paths() -> dict`` (merged in).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
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


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>graphengine API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
input{width:100%;padding:8px;font-size:14px;box-sizing:border-box;margin-bottom:12px}
details{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:6px 0}
summary{cursor:pointer;padding:8px 12px;display:flex;gap:12px;align-items:center}
.m{font-weight:700;font-family:monospace;min-width:64px;text-align:center;border-radius:4px;padding:2px 6px;color:#fff}
.get{background:#2f7bd9}.post{background:#2c9b5a}.delete{background:#c94040}.put{background:#b07a12}.patch{background:#7a4fc9}
.p{font-family:monospace}.s{color:#5b6373}.body{padding:4px 16px 12px}table{border-collapse:collapse}
td{border-top:1px solid #eceef2;padding:4px 8px;vertical-align:top}code{font-family:monospace}
</style></head><body><header><h1>graphengine API</h1><div id="info"></div></header>
<main><input id="q" placeholder="filter routes…" autocomplete="off"><div id="ops">loading…</div></main>
<script>
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
fetch("openapi.json").then(r => r.json()).then(spec => {
  document.getElementById("info").textContent = spec.info.description;
  const rows = [];
  for (const [path, ops] of Object.entries(spec.paths))
    for (const [method, op] of Object.entries(ops)) rows.push({path, method, op});
  const box = document.getElementById("ops");
  const render = filter => {
    box.innerHTML = rows.filter(r => !filter || (r.path + " " + r.method + " " + r.op.summary).toLowerCase().includes(filter))
      .map(({path, method, op}) => `<details><summary><span class="m ${method}">${method.toUpperCase()}</span>
        <span class="p">${esc(path)}</span><span class="s">${esc(op.summary)}</span></summary><div class="body">
        ${op.description ? `<p>${esc(op.description).replace(/\\n/g, "<br>")}</p>` : ""}
        ${(op.parameters || []).length ? `<table>${op.parameters.map(p => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${esc(p.description)}</td></tr>`).join("")}</table>` : ""}
        ${op.requestBody ? `<p>Body: <code>${esc(Object.keys(op.requestBody.content).join(", "))}</code></p>` : ""}
        <p>Responses: ${Object.entries(op.responses).map(([k, v]) => `<code>${esc(k)}</code> ${esc(v.description)}`).join("; ")}</p>
        </div></details>`).join("");
  };
  render("");
  document.getElementById("q").addEventListener("input", e => render(e.target.value.toLowerCase()));
}).catch(e => { document.getElementById("ops").textContent = "could not load openapi.json: " + e; });
</script></body></html>
"""


async def docs_page(request: Request) -> HTMLResponse:
    """Interactive documentation of every route (rendered from /openapi.json, no external assets)."""
    return HTMLResponse(DOCS_PAGE, headers={"Cache-Control": "no-cache"})


def routes() -> list[BaseRoute]:
    return [Route("/openapi.json", openapi_json, methods=["GET"]), Route("/docs", docs_page, methods=["GET"])]
