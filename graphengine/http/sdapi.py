"""The AUTOMATIC1111 / SD.Next API (``/sdapi/v1/*``) on the same engine, queue and cache as ``/prompt``.

Generation bodies are parsed leniently (``graphengine.a1111.requests``), resolved and checked
(``graphengine.a1111.plan``) before anything is queued, turned into workflow graphs
(``graphengine.a1111.graph``) and run through the server's queue (``graphengine.a1111.jobs``).
Errors are JSON with a ``detail`` naming the field (what A1111 clients show), never a traceback.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from graphengine.a1111 import responses as models
from graphengine.a1111.catalog import UnknownModel
from graphengine.a1111.images import BadImage, decode_base64, overlay_unmasked
from graphengine.a1111.infotext import info_json, parse_infotext
from graphengine.a1111.jobs import GenerationFailed, Job, run_job
from graphengine.a1111.plan import IMAGE_UPSCALERS, LATENT_UPSCALE_MODES, RequestRejected, plan_generation
from graphengine.a1111.requests import Img2ImgRequest, PngInfoRequest, Txt2ImgRequest, validation_detail
from graphengine.a1111.service import A1111Service

logger = logging.getLogger(__name__)

PREFIX = "/sdapi/v1"


# ------------------------------------------------------------------------------------------ helpers


class Rejected(Exception):
    """Answer with ``{"detail": …}`` and this status (raised inside handlers)."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


def error_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def service(request: Request) -> A1111Service:
    return A1111Service.of(request.app)


async def read_object(request: Request, *, empty_ok: bool = True) -> dict[str, Any]:
    """The JSON object body, whatever the Content-Type (sd-proxy sends none)."""
    raw = await request.body()
    if not raw.strip():
        if empty_ok:
            return {}
        raise Rejected(422, "body: a JSON object is required")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(422, f"body: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Rejected(422, f"body: expected a JSON object, got {type(data).__name__}")
    return data


def parse_model(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail, errors = validation_detail(exc)
        raise Rejected(422, detail, errors) from None


Handler = Callable[[Request], Awaitable[Response]]


def handles_rejections(handler: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except Rejected as exc:
            return error_response(exc.status, exc.detail, exc.errors)

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


# -------------------------------------------------------------------------------------- generation


async def generate(request: Request, body: dict[str, Any], model: type[Txt2ImgRequest], *, prefix: str | None = None) -> tuple[Any, Any, list[Any]]:
    """Parse, plan and run one A1111 generation; returns (request, plan, images). Raises Rejected."""
    req = parse_model(model, body)
    a1111 = service(request)
    try:
        plan = await run_in_threadpool(plan_generation, req, a1111.plan_context())
    except RequestRejected as exc:
        raise Rejected(exc.status, exc.detail) from None
    if req.override_settings and not req.override_settings_restore_afterwards:
        await run_in_threadpool(persist_options, a1111, req.override_settings)
    job = Job(plan)
    try:
        images = await run_job(a1111.services, a1111.jobs, job, filename_prefix=prefix)
    except GenerationFailed as exc:
        raise Rejected(exc.status, exc.message) from None
    init = plan.init
    if init is not None and init.mask is not None and init.placed:
        for index, image in enumerate(images):  # A1111 keeps the unmasked part of the source exactly
            source = init.placed[index % len(init.placed)]
            image.png = await run_in_threadpool(overlay_unmasked, image.png, source, init.mask)
    return req, plan, images


def generation_body(req: Any, plan: Any, images: list[Any]) -> dict[str, Any]:
    return {
        "images": [image.base64 for image in images] if req.send_images else [],
        "parameters": req.echo(),
        "info": info_json(plan, [i.seed for i in images], [i.subseed for i in images]),
    }


@handles_rejections
async def txt2img(request: Request) -> Response:
    """Text to image (A1111 body; unknown keys ignored)."""
    req, plan, images = await generate(request, await read_object(request), Txt2ImgRequest)
    return JSONResponse(generation_body(req, plan, images))


@handles_rejections
async def img2img(request: Request) -> Response:
    """Image to image and inpainting (init_images / mask as raw base64 or data URLs)."""
    req, plan, images = await generate(request, await read_object(request), Img2ImgRequest)
    return JSONResponse(generation_body(req, plan, images))


# ----------------------------------------------------------------------------------------- options


def resolve_option_models(a1111: A1111Service, changes: dict[str, Any]) -> dict[str, Any]:
    resolved = dict(changes)
    for key, kind in (("sd_model_checkpoint", "checkpoints"), ("sd_vae", "vae")):
        value = changes.get(key)
        if value is None:
            resolved.pop(key, None)
            continue
        if not isinstance(value, str):
            raise Rejected(422, f"{key}: must be a string")
        if key == "sd_vae" and value.strip().casefold() in ("", "none", "automatic"):
            continue
        if key == "sd_model_checkpoint" and not value.strip():
            resolved.pop(key)
            continue
        try:
            resolved[key] = a1111.catalog.resolve(kind, value)
        except UnknownModel as exc:
            raise Rejected(400, f"{key}: {exc}") from None
    return resolved


def persist_options(a1111: A1111Service, changes: dict[str, Any]) -> None:
    try:
        a1111.options.update(resolve_option_models(a1111, changes))
    except ValidationError as exc:
        detail, errors = validation_detail(exc)
        raise Rejected(422, detail, errors) from None


@handles_rejections
async def get_options(request: Request) -> Response:
    """Current settings (sd_model_checkpoint, sd_vae, CLIP_stop_at_last_layers, …)."""
    a1111 = service(request)
    current = await run_in_threadpool(a1111.current_checkpoint)
    entry = await run_in_threadpool(a1111.catalog.entry, "checkpoints", current) if current else None
    return JSONResponse(a1111.options.as_json(current, entry.sha256 if entry else None))  # full sha256, as A1111


@handles_rejections
async def post_options(request: Request) -> Response:
    """Change and persist settings; unknown keys are ignored. Selecting a model loads it on next use."""
    changes = await read_object(request, empty_ok=False)
    await run_in_threadpool(persist_options, service(request), changes)
    return JSONResponse(None)


# -------------------------------------------------------------------------------- progress & control


@handles_rejections
async def progress(request: Request) -> Response:
    """Progress of the running job, queue length and (with previews on) the current preview image."""
    a1111 = service(request)
    snapshot = a1111.services.queue.progress()
    job = a1111.jobs.by_prompt(snapshot.running_prompt_id)
    fraction, eta = 0.0, 0.0
    state = models.ProgressState(job_count=snapshot.queue_remaining)
    if job is not None:
        fraction = min(1.0, job.steps_done(snapshot.node, snapshot.value) / job.total_steps)
        elapsed = time.time() - job.started
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        state.job = f"task({snapshot.running_prompt_id})"
        state.job_no = job.iteration
        state.interrupted = job.interrupted
        state.skipped = job.skip_requested
        state.job_timestamp = time.strftime("%Y%m%d%H%M%S", time.localtime(job.started))
    elif snapshot.running_prompt_id is not None:
        fraction = snapshot.value / snapshot.max if snapshot.max else 0.0
        state.job = f"prompt({snapshot.running_prompt_id})"
    if snapshot.running_prompt_id is not None:
        state.sampling_step, state.sampling_steps = snapshot.value, snapshot.max
    skip_image = request.query_params.get("skip_current_image", "false").lower() in ("1", "true", "yes")
    current_image = None
    if snapshot.preview_png and not skip_image and a1111.previews_enabled:
        current_image = base64.b64encode(snapshot.preview_png).decode("ascii")
    body = models.ProgressResponse(
        progress=round(fraction, 4), eta_relative=round(eta, 3), state=state, current_image=current_image
    )
    return JSONResponse(body.model_dump())


def _control(request: Request, *, skip: bool) -> None:
    a1111 = service(request)
    running = a1111.services.queue.progress().running_prompt_id
    job = a1111.jobs.by_prompt(running)
    if job is not None:
        if skip:
            job.skip_requested = True
        else:
            job.interrupted = True
    if running is not None and (job is not None or not skip):
        a1111.services.queue.interrupt(running)


async def interrupt(request: Request) -> Response:
    """Stop the running job (images finished so far are returned to its caller)."""
    _control(request, skip=False)
    return JSONResponse({})


async def skip(request: Request) -> Response:
    """Abandon the running iteration of an A1111 job and go on with the next one."""
    _control(request, skip=True)
    return JSONResponse({})


# ------------------------------------------------------------------------------------------ listings


@handles_rejections
async def sd_models(request: Request) -> Response:
    """Checkpoints: title, model_name, hash (10 hex), sha256, filename (relative to the models folder)."""
    entries = await run_in_threadpool(service(request).catalog.entries, "checkpoints")
    return JSONResponse(
        [
            models.SdModelItem(
                title=e.title, model_name=e.model_name, hash=e.short_hash, sha256=e.sha256, filename=f"checkpoints/{e.name}"
            ).model_dump()
            for e in entries
        ]
    )


async def refresh_checkpoints(request: Request) -> Response:
    """Re-scan the checkpoints folder and hash every checkpoint not hashed yet."""
    await run_in_threadpool(service(request).catalog.entries, "checkpoints", compute_all=True)
    return JSONResponse(None)


async def refresh_simple(request: Request) -> Response:
    """Re-scan model folders (folders are read on every listing; nothing to do)."""
    return JSONResponse(None)


async def samplers(request: Request) -> Response:
    """A1111 sampler names with aliases, plus the older "<sampler> <Schedule>" names."""
    return JSONResponse(service(request).resolver.sampler_listing())


async def schedulers(request: Request) -> Response:
    """Schedule types (name, label, aliases)."""
    return JSONResponse(service(request).resolver.scheduler_listing())


async def upscalers(request: Request) -> Response:
    """Image-space upscalers usable as hr_upscaler (latent modes: /latent-upscale-modes)."""
    return JSONResponse(
        [
            models.UpscalerItem(name=name, model_name=None, model_path=None, model_url=None, scale=4).model_dump()
            for name in IMAGE_UPSCALERS
        ]
    )


async def latent_upscale_modes(request: Request) -> Response:
    """Latent upscale modes usable as hr_upscaler."""
    return JSONResponse([{"name": name} for name in LATENT_UPSCALE_MODES])


async def _files(request: Request, kind: str) -> list[str]:
    return await run_in_threadpool(service(request).catalog.names, kind)


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


async def sd_vae(request: Request) -> Response:
    """VAE files (model_name, filename)."""
    return JSONResponse([{"model_name": name, "filename": f"vae/{name}"} for name in await _files(request, "vae")])


async def sd_modules(request: Request) -> Response:
    """SD.Next's module list: VAEs and text encoders."""
    names = [("vae", n) for n in await _files(request, "vae")]
    names += [("text_encoders", n) for n in await _files(request, "text_encoders")]
    return JSONResponse([{"model_name": name, "filename": f"{kind}/{name}"} for kind, name in names])


async def loras(request: Request) -> Response:
    """LoRA files; use them with <lora:name:weight> in the prompt."""
    return JSONResponse(
        [{"name": _stem(n), "alias": _stem(n), "path": f"loras/{n}", "metadata": {}} for n in await _files(request, "loras")]
    )


async def embeddings(request: Request) -> Response:
    """Textual-inversion files in models/embeddings."""
    loaded = {
        _stem(n): {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None, "vectors": None}
        for n in await _files(request, "embeddings")
    }
    return JSONResponse({"loaded": loaded, "skipped": {}})


async def hypernetworks(request: Request) -> Response:
    """Hypernetwork files."""
    return JSONResponse([{"name": _stem(n), "path": f"hypernetworks/{n}"} for n in await _files(request, "hypernetworks")])


async def empty_list(request: Request) -> Response:
    """Not available on this server: always an empty list."""
    return JSONResponse([])


async def scripts(request: Request) -> Response:
    """Selectable and always-on scripts: none are available."""
    return JSONResponse({"txt2img": [], "img2img": []})


async def cmd_flags(request: Request) -> Response:
    """Server settings a client may show (never credentials or paths)."""
    config = service(request).services.config
    return JSONResponse(
        {
            "api": True,
            "nowebui": True,
            "listen": config.is_public,
            "port": config.port,
            "api_auth": None,
            "gradio_auth": None,
            "auth_mode": config.auth.mode,
            "preview_method": config.preview_method,
            "cache": config.cache,
            "max_upload_bytes": config.max_upload_bytes,
        }
    )


def _memory() -> dict[str, Any]:
    ram: dict[str, Any] = {}
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        available = os.sysconf("SC_AVPHYS_PAGES")
        total, free = pages * page_size, available * page_size
        ram = {"free": free, "used": total - free, "total": total}
    except (ValueError, OSError, AttributeError):
        ram = {"error": "unavailable"}
    cuda: dict[str, Any] = {"error": "CUDA is not in use"}
    torch = sys.modules.get("torch")  # only if models are loaded already: never import torch here
    if torch is not None:
        try:
            if torch.cuda.is_available():
                free_b, total_b = torch.cuda.mem_get_info()
                cuda = {"system": {"free": free_b, "used": total_b - free_b, "total": total_b}}
        except Exception as exc:  # noqa: BLE001 - a driver problem is reported, not raised
            cuda = {"error": str(exc)}
    return {"ram": ram, "cuda": cuda}


async def memory(request: Request) -> Response:
    """RAM (and CUDA memory when a GPU is in use)."""
    return JSONResponse(await run_in_threadpool(_memory))


def _png_info(data: bytes, max_pixels: int) -> dict[str, Any]:
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise Rejected(400, f"image: {width}x{height} is over the limit of {max_pixels} pixels")
                chunks = {str(k): v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
                info_text = image.info.get("parameters") if isinstance(image.info.get("parameters"), str) else None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise Rejected(400, f"image: not a readable image ({exc})") from None
    info = chunks.pop("parameters", info_text) or ""
    return {"info": info, "items": chunks, "parameters": parse_infotext(info) if info else {}}


@handles_rejections
async def png_info(request: Request) -> Response:
    """Generation parameters stored in a PNG (A1111 'parameters' text; other chunks in items)."""
    req = parse_model(PngInfoRequest, await read_object(request, empty_ok=False))
    try:
        data = decode_base64(req.image, "image")
    except BadImage as exc:
        raise Rejected(400, str(exc)) from None
    return JSONResponse(await run_in_threadpool(_png_info, data, service(request).limits.max_image_pixels))


async def unload_checkpoint(request: Request) -> Response:
    """Unload models (after the running prompt)."""
    service(request).services.queue.request_free(unload_models=True, free_memory=True)
    return JSONResponse(None)


async def reload_checkpoint(request: Request) -> Response:
    """Models load on next use; nothing to do."""
    return JSONResponse(None)


# ------------------------------------------------------------------------------------------ routing


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    handler: Handler
    request: type[BaseModel] | None = None
    response: Any = None  # pydantic model, or list[...] of one


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/txt2img", "POST", txt2img, Txt2ImgRequest, models.GenerationResponse),
    Endpoint("/img2img", "POST", img2img, Img2ImgRequest, models.GenerationResponse),
    Endpoint("/options", "GET", get_options, None, dict),
    Endpoint("/options", "POST", post_options, None, None),
    Endpoint("/progress", "GET", progress, None, models.ProgressResponse),
    Endpoint("/interrupt", "POST", interrupt),
    Endpoint("/skip", "POST", skip),
    Endpoint("/sd-models", "GET", sd_models, None, list[models.SdModelItem]),
    Endpoint("/refresh-checkpoints", "POST", refresh_checkpoints),
    Endpoint("/refresh-vae", "POST", refresh_simple),
    Endpoint("/refresh-loras", "POST", refresh_simple),
    Endpoint("/samplers", "GET", samplers, None, list[models.SamplerItem]),
    Endpoint("/schedulers", "GET", schedulers, None, list[models.SchedulerItem]),
    Endpoint("/upscalers", "GET", upscalers, None, list[models.UpscalerItem]),
    Endpoint("/latent-upscale-modes", "GET", latent_upscale_modes, None, list[models.NameItem]),
    Endpoint("/sd-vae", "GET", sd_vae, None, list[models.ModelFileItem]),
    Endpoint("/sd-modules", "GET", sd_modules, None, list[models.ModelFileItem]),
    Endpoint("/loras", "GET", loras, None, list[models.LoraItem]),
    Endpoint("/embeddings", "GET", embeddings, None, models.EmbeddingsResponse),
    Endpoint("/hypernetworks", "GET", hypernetworks),
    Endpoint("/face-restorers", "GET", empty_list),
    Endpoint("/realesrgan-models", "GET", empty_list),
    Endpoint("/prompt-styles", "GET", empty_list),
    Endpoint("/script-info", "GET", empty_list),
    Endpoint("/scripts", "GET", scripts, None, models.ScriptsList),
    Endpoint("/cmd-flags", "GET", cmd_flags, None, dict),
    Endpoint("/memory", "GET", memory, None, dict),
    Endpoint("/png-info", "POST", png_info, PngInfoRequest, models.PngInfoResponse),
    Endpoint("/unload-checkpoint", "POST", unload_checkpoint),
    Endpoint("/reload-checkpoint", "POST", reload_checkpoint),
)


def routes() -> list[BaseRoute]:
    """Every ``/sdapi/v1`` route (mounted by the app factory behind the auth gate)."""
    return [Route(PREFIX + e.path, e.handler, methods=[e.method]) for e in ENDPOINTS]


def operation(endpoint: Endpoint, prefix: str, tag: str) -> dict[str, Any]:
    """An OpenAPI operation with the request and response schemas of the pydantic models."""
    from pydantic import TypeAdapter

    doc = (endpoint.handler.__doc__ or "").strip()
    op: dict[str, Any] = {
        "summary": doc.split("\n", 1)[0] or f"{endpoint.method} {prefix}{endpoint.path}",
        "operationId": f"{tag}_{endpoint.method.lower()}_{endpoint.path.strip('/').replace('-', '_').replace('/', '_')}",
        "tags": [tag],
    }
    if endpoint.request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": endpoint.request.model_json_schema(mode="validation")}},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        schema = TypeAdapter(endpoint.response).json_schema(mode="serialization")
        ok["content"] = {"application/json": {"schema": schema}}
    op["responses"] = {"200": ok}
    if endpoint.request is not None:
        error_schema = {"content": {"application/json": {"schema": models.ErrorResponse.model_json_schema()}}}
        op["responses"]["400"] = {"description": "A value cannot be used; `detail` names the field.", **error_schema}
        op["responses"]["422"] = {"description": "The body does not validate; `detail` names the field.", **error_schema}
    return op


def openapi_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = operation(endpoint, PREFIX, "sdapi")
    return paths
