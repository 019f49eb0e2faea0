"""HTTP API of the template store, and the template editor page.

    GET    /templates                      list (bundled and user templates)
    POST   /templates                      create (template document, or a bare API-format workflow with
                                           ?name=), or import an uploaded file (multipart "file", "name")
    POST   /templates/check                placeholder report of an unsaved template (the editor's live check)
    GET    /templates/{name}               one template; ETag header
    PUT    /templates/{name}               create/replace; If-Match → 412 on a lost update; a different
                                           "name" in the body renames
    DELETE /templates/{name}               user templates only (bundled → 403); If-Match honoured
    GET    /templates/{name}/placeholders  ✅/❌ per predefined placeholder, custom ones, flagged occurrences
    POST   /templates/{name}/render        values → validated API prompt (errors in ComfyUI's shape)
    POST   /templates/{name}/run           render + queue → {prompt_id, number, node_errors}
    GET    /templates-ui/                  the browser editor (index.html, app.js, style.css)

Values are a JSON object of placeholder name → value; ``{"values": {...}, "client_id": ...}`` is
accepted too (a dict-valued ``values`` key is never a placeholder value).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from graphengine.errors import WorkflowInvalid
from graphengine.templates import (
    StoredTemplate,
    StoreError,
    Template,
    TemplateError,
    TemplateStore,
    check,
    render_template,
    template_from_json,
)
from graphengine.templates.errors import InvalidTemplate, TemplateReadOnly, TemplateTooLarge
from graphengine.templates.placeholders import PREDEFINED_BY_NAME, ValueKind
from graphengine.templates.render import Rendered

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
PAGE_PREFIX = "/templates-ui"
MAX_VALUES_BYTES = 64 * 1024 * 1024  # values may carry base64 images
_WEB_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def routes() -> list[BaseRoute]:
    """The routes SERVER's ``create_app`` mounts behind its auth gate."""
    return [
        Route("/templates", list_templates, methods=["GET"]),
        Route("/templates", create_template, methods=["POST"]),
        Route("/templates/check", check_unsaved, methods=["POST"]),
        Route("/templates/{name}", get_template, methods=["GET"]),
        Route("/templates/{name}", put_template, methods=["PUT"]),
        Route("/templates/{name}", delete_template, methods=["DELETE"]),
        Route("/templates/{name}/placeholders", placeholders, methods=["GET"]),
        Route("/templates/{name}/render", render_route, methods=["POST"]),
        Route("/templates/{name}/run", run_route, methods=["POST"]),
        Route(PAGE_PREFIX, lambda request: RedirectResponse(f"{PAGE_PREFIX}/", status_code=308), methods=["GET"]),
        Route(f"{PAGE_PREFIX}/", page_file, methods=["GET", "HEAD"]),
        Route(PAGE_PREFIX + "/{file}", page_file, methods=["GET", "HEAD"]),
    ]


def public_paths() -> frozenset[str]:
    """The editor page's static files. They hold no data, and a bearer-protected server must serve them
    without credentials: a Bearer challenge shows no login prompt, so the page has to load first and
    then send the token the user types (API calls and the websocket still need it)."""
    return frozenset({f"{PAGE_PREFIX}/", *(f"{PAGE_PREFIX}/{name}" for name in _WEB_FILES)})


def openapi_paths() -> dict[str, Any]:
    """OpenAPI path items for SERVER's /openapi.json."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    values = {"content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}}
    template_schema = {
        "type": "object",
        "required": ["workflow"],
        "properties": {
            "name": {"type": "string", "description": "letters, digits, space, _ . - (≤ 80)"},
            "description": {"type": "string"},
            "defaults": {"type": "object", "description": "placeholder name → default value"},
            "workflow": {"type": "object", "description": "ComfyUI API-format prompt with \"%name%\" placeholders"},
        },
    }
    template = {"content": {"application/json": {"schema": template_schema}}}

    def op(summary: str, params: list | None = None, body: dict | None = None, **responses: str) -> dict[str, Any]:
        item: dict[str, Any] = {"summary": summary, "tags": ["templates"], "responses": {k.lstrip("_"): {"description": v} for k, v in responses.items()}}
        if params:
            item["parameters"] = params
        if body:
            item["requestBody"] = body
        return item

    return {
        "/templates": {
            "get": op("List templates", _200="templates"),
            "post": op("Create a template, or import an API-format workflow (multipart field 'file')", body=template,
                       _201="created", _400="invalid template", _409="name taken", _413="too large"),
        },
        "/templates/check": {"post": op("Placeholder report of an unsaved template", body=template, _200="report")},
        "/templates/{name}": {
            "get": op("Get a template (ETag header)", [name], _200="template", _404="not found"),
            "put": op("Create or replace; If-Match for optimistic concurrency; a new body name renames", [name], template,
                      _200="updated", _201="created", _403="bundled template", _412="changed meanwhile"),
            "delete": op("Delete a user template", [name], _204="deleted", _403="bundled template", _412="changed meanwhile"),
        },
        "/templates/{name}/placeholders": {"get": op("Placeholder report", [name], _200="report")},
        "/templates/{name}/render": {"post": op("Render with values to a validated API prompt", [name], values,
                                                _200="prompt", _400="ComfyUI error body")},
        "/templates/{name}/run": {"post": op("Render and queue", [name], values, _200="{prompt_id, number, node_errors}",
                                             _400="ComfyUI error body")},
    }


# --- helpers ---


def _services(request: Request) -> Any:
    return request.app.state.services


def _store(request: Request) -> TemplateStore:
    return TemplateStore.for_data_dir(_services(request).paths.root)


def _registry(request: Request) -> Any:
    return _services(request).engine.registry


def _max_image_pixels(request: Request) -> int | None:
    return getattr(_services(request).config, "max_image_pixels", None)


def _error(status: int, kind: str, message: str, details: str = "", **extra_info: Any) -> JSONResponse:
    body = {"error": {"type": kind, "message": message, "details": details or message, "extra_info": extra_info}}
    return JSONResponse(body, status_code=status)


def _store_error(exc: StoreError) -> JSONResponse:
    kinds = {400: "invalid_template", 403: "read_only", 404: "not_found", 409: "exists", 412: "precondition_failed", 413: "too_large"}
    response = _error(exc.status, kinds.get(exc.status, "template_store_error"), exc.message, **exc.details)
    current = exc.details.get("current_etag")
    if current:
        response.headers["ETag"] = current
    return response


def _template_response(stored: StoredTemplate, status: int = 200) -> JSONResponse:
    body = stored.to_json()
    body["placeholders"] = check(stored.template)
    return JSONResponse(body, status_code=status, headers={"ETag": stored.etag, "Cache-Control": "no-store"})


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TemplateTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TemplateTooLarge(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(request: Request, limit: int) -> Any:
    raw = await _read_limited(request, limit)
    if not raw.strip():
        raise InvalidTemplate("request body is empty; a JSON document was expected")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidTemplate(f"request body is not valid JSON: {exc}") from None


def _template_from_body(document: Any, name: str | None) -> Template:
    template = template_from_json(document, name=None)
    return template.renamed(template.name or name or "")


def _echo(values: dict[str, Any]) -> dict[str, Any]:
    """Inserted values for the response, with base64 images summarised instead of echoed."""
    return {
        name: f"<base64 image, {len(value)} characters>"
        if name in PREDEFINED_BY_NAME and PREDEFINED_BY_NAME[name].kind is ValueKind.IMAGE and isinstance(value, str)
        else value
        for name, value in values.items()
    }


def _split_values(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values, options) from ``{...values}`` or ``{"values": {...}, "client_id": ..., ...}``."""
    if body is None:
        return {}, {}
    if not isinstance(body, dict):
        raise InvalidTemplate("the body must be a JSON object of placeholder name → value")
    if isinstance(body.get("values"), dict):
        options = {k: v for k, v in body.items() if k != "values"}
        return body["values"], options
    return body, {}


# --- handlers ---


async def list_templates(request: Request) -> Response:
    store = _store(request)
    items = []
    for item in await run_in_threadpool(store.list):
        if isinstance(item, tuple):
            name, error = item
            items.append({"name": name, "bundled": False, "error": error.message})
            continue
        report = check(item.template)
        items.append(
            {
                "name": item.name,
                "description": item.template.description,
                "bundled": item.bundled,
                "etag": item.etag,
                "placeholders": [p["name"] for p in report["predefined"] if p["present"]] + [c["name"] for c in report["custom"]],
            }
        )
    return JSONResponse({"templates": items}, headers={"Cache-Control": "no-store"})


async def create_template(request: Request) -> Response:
    store = _store(request)
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            stored = await _import_upload(request, store)
        else:
            document = await _read_json(request, store.max_bytes + 65536)
            stored = await run_in_threadpool(store.create, _template_from_body(document, request.query_params.get("name")))
    except StoreError as exc:
        return _store_error(exc)
    return _template_response(stored, 201)


async def _import_upload(request: Request, store: TemplateStore) -> StoredTemplate:
    async with request.form(max_files=1, max_fields=8, max_part_size=store.max_bytes + 1) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidTemplate("upload the workflow JSON in a multipart field named 'file'")
        data = await upload.read(store.max_bytes + 1)
        name = form.get("name")
        description = form.get("description")
        if not isinstance(name, str) or not name.strip():
            stem = Path(upload.filename or "").stem
            name = stem or None
        return await run_in_threadpool(
            store.import_bytes, data, name=name, description=description if isinstance(description, str) else None
        )


async def check_unsaved(request: Request) -> Response:
    store = _store(request)
    try:
        document = await _read_json(request, store.max_bytes + 65536)
        template = _template_from_body(document, "unsaved")
    except StoreError as exc:
        return _store_error(exc)
    return JSONResponse(check(template, _registry(request)))


async def get_template(request: Request) -> Response:
    try:
        stored = await run_in_threadpool(_store(request).get, request.path_params["name"])
    except StoreError as exc:
        return _store_error(exc)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and stored.etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": stored.etag})
    return _template_response(stored)


async def put_template(request: Request) -> Response:
    store = _store(request)
    name = request.path_params["name"]
    try:
        document = await _read_json(request, store.max_bytes + 65536)
        template = _template_from_body(document, name)
        existed = await run_in_threadpool(store.exists, name)
        if existed and request.headers.get("if-none-match", "").strip() == "*":
            if store.is_bundled(name):
                raise TemplateReadOnly(name)
            raise StoreError(f"a template named {name!r} already exists", 412)
        stored = await run_in_threadpool(
            lambda: store.save(name, template, if_match=request.headers.get("if-match"))
        )
    except StoreError as exc:
        return _store_error(exc)
    return _template_response(stored, 200 if existed else 201)


async def delete_template(request: Request) -> Response:
    store = _store(request)
    name = request.path_params["name"]
    try:
        await run_in_threadpool(lambda: store.delete(name, if_match=request.headers.get("if-match")))
    except StoreError as exc:
        return _store_error(exc)
    return Response(status_code=204)


async def placeholders(request: Request) -> Response:
    try:
        stored = await run_in_threadpool(_store(request).get, request.path_params["name"])
    except StoreError as exc:
        return _store_error(exc)
    report = check(stored.template, _registry(request))
    return JSONResponse(report | {"name": stored.name, "etag": stored.etag})


async def _render_request(request: Request) -> tuple[Rendered, dict[str, Any]] | Response:
    """(rendered template, request options such as client_id) or an error response."""
    try:
        stored = await run_in_threadpool(_store(request).get, request.path_params["name"])
        body = await _read_json(request, MAX_VALUES_BYTES) if await _has_body(request) else None
        values, options = _split_values(body)
    except StoreError as exc:
        return _store_error(exc)
    try:
        rendered = await run_in_threadpool(
            lambda: render_template(stored.template, values, _registry(request), max_image_pixels=_max_image_pixels(request))
        )
    except TemplateError as exc:
        return JSONResponse(exc.to_body(stored.template.workflow), status_code=400)
    return rendered, options


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return length != "0" if length is not None else request.headers.get("transfer-encoding") is not None


async def render_route(request: Request) -> Response:
    result = await _render_request(request)
    if isinstance(result, Response):
        return result
    rendered, _ = result
    engine = _services(request).engine
    try:
        validated = await run_in_threadpool(engine.validate, rendered.prompt)
    except WorkflowInvalid as exc:
        return JSONResponse(exc.body, status_code=400)
    return JSONResponse(
        {
            "prompt": validated.prompt,
            "outputs": list(validated.outputs),
            "node_errors": dict(validated.node_errors or {}),
            "values": _echo(rendered.values),
            "warnings": list(rendered.warnings),
        }
    )


async def run_route(request: Request) -> Response:
    result = await _render_request(request)
    if isinstance(result, Response):
        return result
    rendered, options = result
    client_id = options.get("client_id")
    extra_data = options.get("extra_data")
    if client_id is not None and not isinstance(client_id, str):
        return _error(400, "invalid_request", "client_id must be a string")
    if extra_data is not None and not isinstance(extra_data, dict):
        return _error(400, "invalid_request", "extra_data must be an object")
    queue = _services(request).queue
    try:
        submitted = await run_in_threadpool(
            lambda: queue.submit(rendered.prompt, client_id=client_id, extra_data=extra_data, front=options.get("front") is True)
        )
    except WorkflowInvalid as exc:
        return JSONResponse(exc.body, status_code=400)
    return JSONResponse(submitted.to_json() | {"values": _echo(rendered.values), "warnings": list(rendered.warnings)})


async def page_file(request: Request) -> Response:
    file = request.path_params.get("file", "index.html")
    media_type = _WEB_FILES.get(file)
    if media_type is None:
        return _error(404, "not_found", f"no page file {file!r}")
    return FileResponse(WEB_DIR / file, media_type=media_type, headers={"Cache-Control": "no-cache"})
