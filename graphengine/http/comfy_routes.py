"""ComfyUI's core routes: prompt, queue, interrupt, free, history, object_info and server info."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from graphengine.errors import WorkflowInvalid
from graphengine.http.bodies import (
    BadBody,
    int_query,
    optional_bool,
    read_json,
    read_json_or_form,
    require_object,
    string_list,
)
from graphengine.http.openapi import describe
from graphengine.http.responses import empty_ok, error_body, json_text
from graphengine.http.ws import valid_client_id
from graphengine.node import object_info as node_object_info

COMFYUI_VERSION = "0.3.64"  # the API level we are wire-compatible with


def _services(request: Request) -> Any:
    return request.app.state.services


def _prompt_error(kind: str, message: str, details: str = "") -> JSONResponse:
    return JSONResponse({**error_body(kind, message, details), "node_errors": {}}, status_code=400)


# ---------------------------------------------------------------------------------------- /prompt


async def get_prompt(request: Request) -> JSONResponse:
    """Queue length: ``{"exec_info": {"queue_remaining": n}}`` (pending + running)."""
    return JSONResponse({"exec_info": {"queue_remaining": _services(request).queue.queue_remaining}})


@describe(body="json", responses={200: "{prompt_id, number, node_errors}", 400: "{error, node_errors} (ComfyUI shape)"})
async def post_prompt(request: Request) -> JSONResponse:
    """Queue an API-format workflow.

    Body: ``{"prompt": {...}, "client_id"?, "prompt_id"?, "number"?, "front"?, "extra_data"?,
    "partial_execution_targets"?}``, parsed as JSON whatever the Content-Type.
    """
    try:
        body = await read_json(request)
    except BadBody as exc:
        return _prompt_error(exc.kind, "Invalid request body", exc.detail)
    if not isinstance(body, dict):
        return _prompt_error("invalid_request", "Invalid request body", "the body must be a JSON object")
    if "prompt" not in body:
        return _prompt_error("no_prompt", "No prompt provided", "No prompt provided")
    prompt = body["prompt"]
    if not isinstance(prompt, dict):
        return _prompt_error("invalid_prompt", "Invalid prompt", "'prompt' must be an object of node id → node")
    client_id = body.get("client_id")
    if client_id is not None and not valid_client_id(client_id):
        return _prompt_error("invalid_client_id", "Invalid client_id",
                             "client_id must be 1-128 letters, digits, '.', '_', ':' or '-'")
    extra_data = body.get("extra_data") or {}
    if not isinstance(extra_data, dict):
        return _prompt_error("invalid_request", "Invalid extra_data", "'extra_data' must be an object")
    usage_source = request.headers.get("comfy-usage-source")
    if usage_source and "comfy_usage_source" not in extra_data:
        extra_data = {**extra_data, "comfy_usage_source": usage_source}
    number = body.get("number")
    if number is not None:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            try:
                number = float(number)
            except (TypeError, ValueError):
                return _prompt_error("invalid_request", "Invalid number", "'number' must be a number")
        number = float(number)
    prompt_id = body.get("prompt_id")
    if prompt_id is not None and not isinstance(prompt_id, str):
        prompt_id = str(prompt_id)
    targets = body.get("partial_execution_targets")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, (str, int)) for t in targets)):
        return _prompt_error("invalid_request", "Invalid partial_execution_targets", "must be a list of node ids")
    try:
        submitted = await run_in_threadpool(
            _services(request).queue.submit,
            prompt,
            client_id=client_id,
            extra_data=extra_data,
            number=number,
            front=bool(body.get("front")),
            prompt_id=prompt_id,
            partial_execution_targets=[str(t) for t in targets] if targets is not None else None,
        )
    except WorkflowInvalid as exc:
        return JSONResponse(exc.body, status_code=400)
    return JSONResponse(submitted.to_json())


# ---------------------------------------------------------------------------------------- /queue


async def get_queue(request: Request) -> Response:
    """Running and pending items, each ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""
    queue = _services(request).queue
    # thousands of items take a while to serialize: keep that off the event loop
    return json_text(await run_in_threadpool(queue.queue_json_text))


async def _clear_then_delete(body: dict[str, Any], clear: Callable[[], Any], delete: Callable[[list[str]], Any]) -> Response:
    """The ``{"clear": true, "delete": [id, …]}`` body of POST /queue and /history: clear when asked,
    then delete the listed ids (both off the event loop)."""
    if optional_bool(body, "clear"):
        await run_in_threadpool(clear)
    ids = string_list(body, "delete")
    if ids:
        await run_in_threadpool(delete, ids)
    return empty_ok()


@describe(body="json", responses={200: "empty body"})
async def post_queue(request: Request) -> Response:
    """Delete pending items (``{"delete": [prompt_id, …]}``) and/or clear the queue (``{"clear": true}``).

    The running prompt is not affected (use /interrupt)."""
    body = require_object(await read_json_or_form(request))
    queue = _services(request).queue
    return await _clear_then_delete(body, queue.clear, queue.delete)


@describe(body="json", responses={200: "empty body"})
async def post_interrupt(request: Request) -> Response:
    """Interrupt the running prompt; with ``{"prompt_id": id}`` only if that prompt is running.

    The body may be empty or not JSON at all (as many clients send)."""
    try:
        body = await read_json(request, empty=None)
    except BadBody:
        body = None
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    _services(request).queue.interrupt(prompt_id if isinstance(prompt_id, str) else None)
    return empty_ok()


@describe(body="json", responses={200: "empty body"})
async def post_free(request: Request) -> Response:
    """Unload models (``unload_models``) and/or also drop every cache (``free_memory``) after the running prompt."""
    body = require_object(await read_json_or_form(request))
    _services(request).queue.request_free(
        unload_models=optional_bool(body, "unload_models"), free_memory=optional_bool(body, "free_memory")
    )
    return empty_ok()


# ---------------------------------------------------------------------------------------- /history


@describe(query={"max_items": "newest N entries", "offset": "start index (oldest = 0)"})
async def get_history(request: Request) -> Response:
    """Finished prompts: ``{prompt_id: {prompt, outputs, status, meta}, …}`` oldest first."""
    max_items = int_query(request, "max_items", minimum=0)
    offset = int_query(request, "offset", default=-1)
    queue = _services(request).queue
    return json_text(await run_in_threadpool(queue.history_json, max_items, offset if offset is not None else -1))


async def get_history_entry(request: Request) -> Response:
    """One finished prompt as ``{prompt_id: entry}``, or ``{}`` while it is queued/running or unknown."""
    return json_text(_services(request).queue.history_json(prompt_id=request.path_params["prompt_id"]))


@describe(body="json", responses={200: "empty body"})
async def post_history(request: Request) -> Response:
    """Delete history entries (``{"delete": [id, …]}``) and/or clear it (``{"clear": true}``)."""
    body = require_object(await read_json_or_form(request))
    queue = _services(request).queue
    return await _clear_then_delete(body, queue.clear_history, queue.delete_history)


# ---------------------------------------------------------------------------------------- /object_info


async def get_object_info(request: Request) -> JSONResponse:
    """Every node class's schema (inputs, outputs, category…); model and file lists are re-read."""
    info = await run_in_threadpool(_services(request).engine.object_info)
    return JSONResponse(info)


async def get_object_info_node(request: Request) -> JSONResponse:
    """One node class's schema as ``{class_type: info}``, or ``{}`` when unknown."""
    services = _services(request)
    name = request.path_params["node_class"]
    node_class = services.engine.registry.get(name)
    if node_class is None:
        return JSONResponse({})
    info = await run_in_threadpool(node_object_info, node_class, services.engine.env)
    return JSONResponse({name: info})


# ---------------------------------------------------------------------------------------- server info


def _memory() -> tuple[int, int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in handle if ":" in line}
        return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        try:
            pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
            return pages * size, os.sysconf("SC_AVPHYS_PAGES") * size
        except (ValueError, OSError, AttributeError):
            return 0, 0


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _devices(ram_total: int, ram_free: int) -> list[dict[str, Any]]:
    torch = sys.modules.get("torch")  # only report CUDA if torch is already loaded: never import it here
    devices: list[dict[str, Any]] = []
    if torch is not None:
        try:
            if torch.cuda.is_available():
                for index in range(torch.cuda.device_count()):
                    free, total = torch.cuda.mem_get_info(index)
                    devices.append({"name": f"cuda:{index} {torch.cuda.get_device_name(index)}", "type": "cuda",
                                    "index": index, "vram_total": total, "vram_free": free,
                                    "torch_vram_total": torch.cuda.memory_reserved(index),
                                    "torch_vram_free": torch.cuda.memory_reserved(index)
                                    - torch.cuda.memory_allocated(index)})
        except Exception:  # noqa: BLE001 - stats must never fail the probe
            devices = []
    if not devices:
        devices.append({"name": "cpu", "type": "cpu", "index": None, "vram_total": ram_total, "vram_free": ram_free,
                        "torch_vram_total": 0, "torch_vram_free": 0})
    return devices


async def get_system_stats(request: Request) -> JSONResponse:
    """OS, memory, versions and devices (a liveness probe for many clients)."""
    ram_total, ram_free = _memory()
    from graphengine import __version__

    return JSONResponse({
        "system": {
            "os": os.name,
            "ram_total": ram_total,
            "ram_free": ram_free,
            "comfyui_version": COMFYUI_VERSION,
            "graphengine_version": __version__,
            "required_frontend_version": "",
            "installed_templates_version": "",
            "required_templates_version": "",
            "python_version": sys.version,
            "pytorch_version": _package_version("torch"),
            "embedded_python": False,
            "argv": ["graphengine", "serve"],
        },
        "devices": _devices(ram_total, ram_free),
    })


async def get_features(request: Request) -> JSONResponse:
    """Server feature flags (``supports_preview_metadata``, ``max_upload_size``)."""
    return JSONResponse(_services(request).feature_flags)


def _model_library(request: Request) -> Any:
    return _services(request).engine.env.models


async def get_embeddings(request: Request) -> JSONResponse:
    """Embedding names, without file extensions."""
    library = _model_library(request)
    names: list[str] = []
    if library is not None:
        try:
            files = await run_in_threadpool(library.list, "embeddings")
        except (KeyError, ValueError, OSError):
            files = []
        names = [os.path.splitext(name)[0] for name in files]
    return JSONResponse(names)


async def get_extensions(request: Request) -> JSONResponse:
    """Frontend extension scripts (none: graphengine ships no ComfyUI frontend extensions)."""
    return JSONResponse([])


async def get_models(request: Request) -> JSONResponse:
    """Model folder kinds (checkpoints, loras, vae, …)."""
    library = _model_library(request)
    kinds = list(library.folder_kinds()) if library is not None and hasattr(library, "folder_kinds") else []
    return JSONResponse(kinds)


async def get_models_folder(request: Request) -> JSONResponse:
    """Sorted relative file names of one model folder kind; 404 for an unknown kind."""
    library = _model_library(request)
    folder = request.path_params["folder"]
    kinds = list(library.folder_kinds()) if library is not None and hasattr(library, "folder_kinds") else []
    if folder not in kinds:
        return JSONResponse(error_body("unknown_folder", f"unknown model folder {folder!r}"), status_code=404)
    files = await run_in_threadpool(library.list, folder)
    return JSONResponse(sorted(files))


def routes() -> list[BaseRoute]:
    return [
        Route("/prompt", get_prompt, methods=["GET"]),
        Route("/prompt", post_prompt, methods=["POST"]),
        Route("/queue", get_queue, methods=["GET"]),
        Route("/queue", post_queue, methods=["POST"]),
        Route("/interrupt", post_interrupt, methods=["POST"]),
        Route("/free", post_free, methods=["POST"]),
        Route("/history", get_history, methods=["GET"]),
        Route("/history", post_history, methods=["POST"]),
        Route("/history/{prompt_id}", get_history_entry, methods=["GET"]),
        Route("/object_info", get_object_info, methods=["GET"]),
        Route("/object_info/{node_class}", get_object_info_node, methods=["GET"]),
        Route("/system_stats", get_system_stats, methods=["GET"]),
        Route("/features", get_features, methods=["GET"]),
        Route("/embeddings", get_embeddings, methods=["GET"]),
        Route("/extensions", get_extensions, methods=["GET"]),
        Route("/models", get_models, methods=["GET"]),
        Route("/models/{folder}", get_models_folder, methods=["GET"]),
    ]
