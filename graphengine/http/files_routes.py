"""Files: ``/view`` (with ``preview``/``channel``), uploads, ``/view_metadata`` and ``/internal/files``.

Every user-supplied name goes through ``graphengine.files`` confinement (400 malformed, 403 escaping,
404 missing). Served files carry ``X-Content-Type-Options: nosniff``; active types (HTML, SVG, XML,
scripts) are sent as ``application/octet-stream`` attachments so a browser never runs them.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import struct
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from graphengine.errors import NodeInputError
from graphengine.files import (
    ImageTooLarge,
    PathRejected,
    confine,
    confine_subfolder,
    decode_image_bytes,
    safe_filename,
    write_atomically,
)
from graphengine.http.bodies import BadBody
from graphengine.http.openapi import describe
from graphengine.http.responses import error_body

FILE_TYPES = ("output", "input", "temp")
ACTIVE_EXTENSIONS = frozenset({".html", ".htm", ".xhtml", ".shtml", ".svg", ".svgz", ".xml", ".xsl", ".xslt",
                               ".js", ".mjs", ".css", ".pdf", ".swf"})
MAX_SAFETENSORS_HEADER = 64 * 1024 * 1024


def _services(request: Request) -> Any:
    return request.app.state.services


def _root(request: Request, kind: str) -> Path:
    if kind not in FILE_TYPES:
        raise BadBody("invalid_type", f"unknown type {kind!r}; expected one of {', '.join(FILE_TYPES)}")
    return _services(request).paths.directory(kind)


def _split_annotation(filename: str, kind: str) -> tuple[str, str]:
    """``name.png [output]`` → (``name.png``, ``output``), as ComfyUI's annotated names."""
    for candidate in FILE_TYPES:
        suffix = f" [{candidate}]"
        if filename.endswith(suffix):
            return filename[: -len(suffix)], candidate
    return filename, kind


# ---------------------------------------------------------------------------------------- /view


@describe(query={"filename": "file name (required)", "type": "output (default) | input | temp",
                 "subfolder": "folder inside the type's root", "preview": "webp|jpeg[;quality] re-encode",
                 "channel": "rgba (default) | rgb | a"},
          responses={200: "file bytes", 400: "malformed name or type", 403: "outside its folder", 404: "missing"})
async def view(request: Request) -> Response:
    """Serve an output/input/temp file (``/view?filename=&subfolder=&type=``)."""
    query = request.query_params
    filename = query.get("filename")
    if filename is None:
        return JSONResponse(error_body("not_found", "missing 'filename' query parameter"), status_code=404)
    filename, kind = _split_annotation(filename, query.get("type") or "output")
    root = _root(request, kind)
    if not filename or filename.startswith("/") or ".." in filename:
        raise PathRejected(f"invalid filename {filename!r}", 400)
    folder = confine_subfolder(root, query.get("subfolder") or "")
    path = confine(folder, filename, must_exist=True)
    if not path.is_file():
        raise PathRejected(f"{filename!r} is not a file", 404)
    preview = query.get("preview")
    channel = (query.get("channel") or "rgba").lower()
    if channel not in ("rgba", "rgb", "a"):
        raise BadBody("invalid_request", "channel must be rgba, rgb or a")
    if preview or channel != "rgba":
        limit = _services(request).config.max_image_pixels
        body, media_type = await run_in_threadpool(_reencode, path, preview, channel, limit)
        return Response(body, media_type=media_type, headers={"Content-Disposition": _disposition("inline", path.name)})
    suffix = path.suffix.lower()
    if suffix in ACTIVE_EXTENSIONS:
        return FileResponse(path, media_type="application/octet-stream", filename=path.name,
                            content_disposition_type="attachment")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=path.name, content_disposition_type="inline")


def _disposition(kind: str, name: str) -> str:
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=utf-8''{quote(name)}"


def _reencode(path: Path, preview: str | None, channel: str, max_pixels: int) -> tuple[bytes, str]:
    from PIL import Image

    try:
        image = decode_image_bytes(path.read_bytes(), max_pixels)
    except ImageTooLarge as exc:
        raise BadBody("image_too_large", str(exc)) from None
    except NodeInputError as exc:
        raise BadBody("invalid_image", f"cannot re-encode {path.name}: {exc}") from None
    buffer = io.BytesIO()
    if preview:
        fmt, _, quality_text = preview.partition(";")
        fmt = fmt.strip().lower() or "webp"
        if fmt not in ("webp", "jpeg"):
            fmt = "webp"
        try:
            quality = int(quality_text) if quality_text else 90
        except ValueError:
            quality = 90
        quality = max(1, min(quality, 100))
        if "a" in channel and channel != "rgb" and fmt == "jpeg":
            fmt = "webp"
        converted = image.convert("RGB") if fmt == "jpeg" or channel == "rgb" else image.convert("RGBA")
        converted.save(buffer, format=fmt.upper(), quality=quality)
        return buffer.getvalue(), f"image/{fmt}"
    if channel == "rgb":
        image.convert("RGB").save(buffer, format="PNG")
    else:  # "a": the alpha channel in an otherwise black RGBA image
        alpha = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 255)
        out = Image.new("RGBA", image.size, (0, 0, 0, 255))
        out.putalpha(alpha)
        out.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


# ---------------------------------------------------------------------------------------- uploads


async def _read_upload(request: Request) -> tuple[UploadFile, dict[str, str]]:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadBody("invalid_request", "uploads must be multipart/form-data with an 'image' file part")
    form = await request.form(max_files=2, max_fields=32, max_part_size=64 * 1024)
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise BadBody("invalid_request", "missing the 'image' file part")
    if not upload.filename:
        raise BadBody("invalid_request", "the 'image' part has no filename")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return upload, fields


def _check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse images whose header declares more pixels than allowed (non-images pass unchanged)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return
    if width * height > max_pixels:
        raise BadBody("image_too_large", str(ImageTooLarge(width, height, max_pixels)))


def _store_upload(root: Path, subfolder: str, filename: str, data: bytes, overwrite: bool) -> str:
    folder = confine_subfolder(root, subfolder)
    folder.mkdir(parents=True, exist_ok=True)
    folder = confine_subfolder(root, subfolder)  # re-check after creating (symlinks created meanwhile)
    target = confine(folder, filename)
    if not overwrite:
        stem, suffix = Path(filename).stem, Path(filename).suffix
        counter = 1
        digest = hashlib.sha256(data).hexdigest()
        while target.exists():
            if target.is_file() and _sha256(target) == digest:
                return target.name
            target = confine(folder, f"{stem} ({counter}){suffix}")
            counter += 1
    write_atomically(target, data)
    return target.name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _upload_target(request: Request, fields: dict[str, str]) -> tuple[str, Path, str, bool]:
    kind = fields.get("type") or "input"
    root = _root(request, kind)
    subfolder = fields.get("subfolder") or ""
    overwrite = (fields.get("overwrite") or "").lower() in ("true", "1")
    return kind, root, subfolder, overwrite


@describe(body="multipart", responses={200: "{name, subfolder, type}", 400: "bad part, name or type",
                                       403: "subfolder outside its root", 413: "too large"})
async def upload_image(request: Request) -> JSONResponse:
    """Upload an image (multipart ``image``, optional ``type``, ``subfolder``, ``overwrite``)."""
    upload, fields = await _read_upload(request)
    filename = safe_filename(upload.filename)
    kind, root, subfolder, overwrite = _upload_target(request, fields)
    data = await upload.read()
    config = _services(request).config
    await run_in_threadpool(_check_pixels, data, config.max_image_pixels)
    name = await run_in_threadpool(_store_upload, root, subfolder, filename, data, overwrite)
    return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})


@describe(body="multipart", responses={200: "{name, subfolder, type}", 400: "bad part, name, type or image"})
async def upload_mask(request: Request) -> JSONResponse:
    """Upload a mask: the alpha of ``image`` replaces the alpha of the image named by ``original_ref``."""
    upload, fields = await _read_upload(request)
    filename = safe_filename(upload.filename)
    kind, root, subfolder, overwrite = _upload_target(request, fields)
    try:
        ref = json.loads(fields.get("original_ref") or "")
    except ValueError:
        raise BadBody("invalid_request", "'original_ref' must be a JSON object {filename, subfolder?, type?}") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise BadBody("invalid_request", "'original_ref' must be a JSON object with a 'filename'")
    ref_name, ref_kind = _split_annotation(ref["filename"], str(ref.get("type") or "output"))
    ref_root = _root(request, ref_kind)
    if not ref_name or ref_name.startswith("/") or ".." in ref_name:
        raise PathRejected(f"invalid original filename {ref_name!r}", 400)
    original = confine(confine_subfolder(ref_root, str(ref.get("subfolder") or "")), ref_name, must_exist=True)
    data = await upload.read()
    max_pixels = _services(request).config.max_image_pixels
    png = await run_in_threadpool(_merge_mask, original, data, max_pixels)
    name = await run_in_threadpool(_store_upload, root, subfolder, filename, png, overwrite)
    return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})


def _merge_mask(original_path: Path, mask_bytes: bytes, max_pixels: int) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    try:
        original = decode_image_bytes(original_path.read_bytes(), max_pixels)
        mask = decode_image_bytes(mask_bytes, max_pixels)
    except ImageTooLarge as exc:
        raise BadBody("image_too_large", str(exc)) from None
    except NodeInputError as exc:
        raise BadBody("invalid_image", str(exc)) from None
    info = PngInfo()
    for key, value in getattr(original, "text", {}).items():
        info.add_text(str(key), str(value))
    merged = original.convert("RGBA")
    alpha = mask.convert("RGBA").getchannel("A")
    if alpha.size != merged.size:
        raise BadBody("invalid_image", f"mask size {alpha.size} differs from the original's {merged.size}")
    merged.putalpha(alpha)
    buffer = io.BytesIO()
    merged.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- metadata


@describe(query={"filename": "a .safetensors file in that model folder"})
async def view_metadata(request: Request) -> JSONResponse:
    """The ``__metadata__`` header of a model's .safetensors file; 404 when absent."""
    folder = request.path_params["folder_name"]
    filename = request.query_params.get("filename")
    library = _services(request).engine.env.models
    if not filename or not filename.endswith(".safetensors") or library is None:
        return JSONResponse(error_body("not_found", "a .safetensors 'filename' is required"), status_code=404)
    if folder not in (library.folder_kinds() if hasattr(library, "folder_kinds") else ()):
        return JSONResponse(error_body("not_found", f"unknown model folder {folder!r}"), status_code=404)
    try:
        path = library.resolve(folder, filename)
    except PathRejected:
        raise
    except (KeyError, FileNotFoundError, ValueError, OSError):
        return JSONResponse(error_body("not_found", f"{filename!r} not found in {folder}"), status_code=404)
    metadata = await run_in_threadpool(_safetensors_metadata, Path(path))
    if metadata is None:
        return JSONResponse(error_body("not_found", f"{filename!r} has no metadata"), status_code=404)
    return JSONResponse(metadata)


def _safetensors_metadata(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_SAFETENSORS_HEADER:
                return None
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else None


# ---------------------------------------------------------------------------------------- internal


async def internal_files(request: Request) -> JSONResponse:
    """Top-level file names of input/output/temp, newest first."""
    kind = request.path_params["directory_type"]
    if kind not in FILE_TYPES:
        return JSONResponse({"error": "Invalid directory type"}, status_code=400)
    root = _services(request).paths.directory(kind)
    return JSONResponse(await run_in_threadpool(_newest_first, root))


def _newest_first(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    entries = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            entries.append((entry.stat().st_mtime, entry.name))
        except OSError:
            continue
    return [name for _, name in sorted(entries, reverse=True)]


def routes() -> list[BaseRoute]:
    return [
        Route("/view", view, methods=["GET"]),
        Route("/view_metadata/{folder_name}", view_metadata, methods=["GET"]),
        Route("/upload/image", upload_image, methods=["POST"]),
        Route("/upload/mask", upload_mask, methods=["POST"]),
    ]


def internal_routes() -> list[BaseRoute]:
    return [Route("/internal/files/{directory_type}", internal_files, methods=["GET"])]
