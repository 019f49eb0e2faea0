"""OpenAI-style image API: ``POST /v1/images/generations`` and ``POST /v1/images/edits``.

Requests become A1111 txt2img / img2img bodies. With downstream servers registered
(``/admin/register/image``) they go to the least-loaded healthy one (retried once elsewhere on
failure); otherwise, or when every downstream failed, they run on this server's own queue. Answer:
``{"created", "data": [{"b64_json" | "url", "revised_prompt"}]}``; ``url`` is a ``/view`` URL of this
server. Errors carry OpenAI's ``error`` object and A1111's ``detail``.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from graphengine.a1111.images import BadImage, decode_image, png_base64
from graphengine.a1111.openai_models import ImageEditRequest, ImageGenerationRequest, OpenAIFields, parse_size
from graphengine.a1111.requests import Img2ImgRequest, Txt2ImgRequest
from graphengine.a1111.service import A1111Service
from graphengine.downstream.registry import DownstreamUnavailable
from graphengine.files import next_output_name, write_atomically
from graphengine.http.admin import registry_of
from graphengine.http.sdapi import Rejected, generate, parse_model, read_object

logger = logging.getLogger(__name__)

FILENAME_PREFIX = "openai"


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


def openai_error(status: int, detail: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    param = detail.split(":", 1)[0] if ":" in detail and " " not in detail.split(":", 1)[0] else None
    return JSONResponse(
        {"error": {"message": detail, "type": kind, "param": param, "code": None}, "detail": detail}, status_code=status
    )


def _view_url(request: Request, filename: str, subfolder: str, kind: str) -> str:
    query = urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
    return f"{str(request.base_url).rstrip('/')}/view?{query}"


def _save_png(request: Request, png: bytes) -> tuple[str, str]:
    paths = request.app.state.services.paths
    name = next_output_name(paths.output_dir, FILENAME_PREFIX)
    counter = name.counter
    while True:
        filename = name.file_name(counter)
        path = name.full_dir / filename
        if not path.exists():
            write_atomically(path, png)
            return filename, name.subfolder
        counter += 1


async def _answer(request: Request, kind: str, body: dict[str, Any], response_format: str, prompt: str) -> Response:
    """Run ``body`` (an A1111 txt2img/img2img body) downstream or here; answer in OpenAI's shape."""
    a1111 = A1111Service.of(request.app)
    registry = registry_of(request.app)
    pngs: list[tuple[bytes, str | None, str, str]] = []  # (png, filename, subfolder, type)
    ran_downstream = False
    if registry.has_servers:
        try:
            forwarded = {key: value for key, value in body.items() if value is not None}
            answer = await registry.post(f"sdapi/v1/{kind}", forwarded)
        except DownstreamUnavailable as exc:
            if not await run_in_threadpool(a1111.catalog.names, "checkpoints"):
                return openai_error(502, f"no downstream image server could answer: {exc}")
            logger.warning("downstream servers failed (%s); generating here", exc)
        else:
            if answer.status != 200:
                if isinstance(answer.body, dict):
                    return JSONResponse(answer.body, status_code=answer.status)
                return openai_error(answer.status, f"downstream {answer.server} answered: {answer.text[:500]}")
            images = answer.body.get("images") if isinstance(answer.body, dict) else None
            if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
                return openai_error(502, f"downstream {answer.server} answered without an images list")
            try:
                pngs = [(base64.b64decode(i.split(",", 1)[-1]), None, "", "output") for i in images]
            except ValueError:
                return openai_error(502, f"downstream {answer.server} answered with invalid base64")
            ran_downstream = True
    if not ran_downstream:
        model = Img2ImgRequest if kind == "img2img" else Txt2ImgRequest
        local = dict(body, save_images=response_format == "url", send_images=True)
        _, _, images = await generate(request, local, model, prefix=FILENAME_PREFIX)
        pngs = [(i.png, i.filename, i.subfolder, i.type) for i in images]
    data = []
    for png, filename, subfolder, file_type in pngs:
        if response_format == "b64_json":
            data.append(ImageData(b64_json=base64.b64encode(png).decode("ascii"), revised_prompt=prompt))
            continue
        if filename is None:
            filename, subfolder = await run_in_threadpool(_save_png, request, png)
        data.append(ImageData(url=_view_url(request, filename, subfolder, file_type), revised_prompt=prompt))
    body_out = ImagesResponse(created=int(time.time()), data=data)
    return JSONResponse(body_out.model_dump(exclude_none=True))


def _model_checkpoint(request: Request, model: str | None) -> str | None:
    if not model:
        return None
    try:
        return A1111Service.of(request.app).catalog.resolve("checkpoints", model)
    except LookupError:
        return None  # an OpenAI model name ("dall-e-3"): keep the current checkpoint


async def generations(request: Request) -> Response:
    """Create images from a prompt (OpenAI body, plus A1111 txt2img fields)."""
    try:
        req = parse_model(ImageGenerationRequest, await read_object(request, empty_ok=False))
        body = req.a1111_fields()
        checkpoint = await run_in_threadpool(_model_checkpoint, request, req.model)
        if checkpoint and not body.get("sd_model_checkpoint"):
            body["sd_model_checkpoint"] = checkpoint
        return await _answer(request, "txt2img", body, req.response_format, req.prompt)
    except Rejected as exc:
        return openai_error(exc.status, exc.detail)


async def _edit_fields(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return await read_object(request, empty_ok=False)
    try:
        form = await request.form()
    except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's error
        raise Rejected(400, f"body: not valid multipart/form-data ({exc})") from None
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        name = key.removesuffix("[]")
        if isinstance(value, UploadFile):
            data = await value.read()
            value = base64.b64encode(data).decode("ascii")
        if name == "image" and "image" in fields:
            continue  # OpenAI allows several images; the first one is edited
        fields[name] = value
    return fields


def _openai_mask(text: str, field: str, max_pixels: int) -> tuple[str | None, Any]:
    """OpenAI marks the area to edit as transparent; A1111 wants it white. Returns (mask, image)."""
    from PIL import ImageOps

    decoded = decode_image(text, field, max_pixels)
    image = decoded.image
    if image.mode not in ("RGBA", "LA") or image.getchannel("A").getextrema() == (255, 255):
        return None, image
    return png_base64(ImageOps.invert(image.getchannel("A"))), image


async def edits(request: Request) -> Response:
    """Edit an image (OpenAI multipart or JSON body, plus A1111 img2img fields)."""
    try:
        fields = await _edit_fields(request)
        req = parse_model(ImageEditRequest, fields)
        source = req.image or (req.init_images[0] if req.init_images else None)
        if not source:
            raise Rejected(422, "image: an image to edit is required")
        limits = A1111Service.of(request.app).limits
        try:
            alpha_mask, image = await run_in_threadpool(_openai_mask, source, "image", limits.max_image_pixels)
            mask = alpha_mask
            if req.mask and "mask" in fields and isinstance(fields.get("mask"), str):
                mask, _ = await run_in_threadpool(_openai_mask, req.mask, "mask", limits.max_image_pixels)
                if mask is None:
                    mask = req.mask  # an opaque mask: A1111 semantics (white = edit)
        except BadImage as exc:
            raise Rejected(400, str(exc)) from None
        body = req.model_dump(mode="json", exclude={*OpenAIFields.model_fields, "image"})
        body["init_images"] = [source]
        body["mask"] = mask
        size = parse_size(req.size) if req.size else None
        if size is None and "width" not in fields and "height" not in fields:
            size = (max(64, image.width // 8 * 8), max(64, image.height // 8 * 8))
        if size:
            body["width"], body["height"] = size
        if req.n is not None:
            body["batch_size"] = req.n
        checkpoint = await run_in_threadpool(_model_checkpoint, request, req.model)
        if checkpoint and not body.get("sd_model_checkpoint"):
            body["sd_model_checkpoint"] = checkpoint
        return await _answer(request, "img2img", body, req.response_format, req.prompt)
    except Rejected as exc:
        return openai_error(exc.status, exc.detail)


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/images/generations", generations, methods=["POST"]),
        Route("/v1/images/edits", edits, methods=["POST"]),
    ]


def openapi_paths() -> dict[str, Any]:
    from graphengine.a1111.responses import ErrorResponse

    ok = {"description": "OK", "content": {"application/json": {"schema": ImagesResponse.model_json_schema()}}}
    err = {"content": {"application/json": {"schema": ErrorResponse.model_json_schema()}}}
    responses = {
        "200": ok,
        "400": {"description": "A value cannot be used (`detail` / `error.message` name the field).", **err},
        "422": {"description": "The body does not validate.", **err},
        "502": {"description": "No downstream server could answer."},
    }
    edit_schema = ImageEditRequest.model_json_schema()
    return {
        "/v1/images/generations": {
            "post": {
                "summary": "Create images from a prompt (OpenAI-style; A1111 fields accepted)",
                "operationId": "openai_images_generations",
                "tags": ["openai"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ImageGenerationRequest.model_json_schema()}},
                },
                "responses": responses,
            }
        },
        "/v1/images/edits": {
            "post": {
                "summary": "Edit an image (OpenAI-style multipart or JSON; A1111 img2img fields accepted)",
                "operationId": "openai_images_edits",
                "tags": ["openai"],
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": edit_schema}, "application/json": {"schema": edit_schema}},
                },
                "responses": responses,
            }
        },
    }
