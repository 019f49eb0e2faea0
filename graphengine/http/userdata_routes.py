"""Per-user storage as ComfyUI's user manager: ``/settings``, ``/users``, ``/userdata``, ``/v2/userdata``.

graphengine runs single-user: every request is user ``default`` and files live under
``<data>/user/default/``. All names are confined to that folder (400 malformed, 403 escaping).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from graphengine.files import PathRejected, confine, confine_subfolder, write_atomically
from graphengine.http.bodies import bool_query, read_json, require_object
from graphengine.http.openapi import describe
from graphengine.http.responses import empty_ok, error_body

SETTINGS_FILE = "comfy.settings.json"


def _user_root(request: Request) -> Path:
    root: Path = request.app.state.services.user_dir
    root.mkdir(parents=True, exist_ok=True)
    return root


def _user_path(request: Request, relative: str, *, must_exist: bool = False) -> Path:
    if "%" in relative:
        relative = unquote(relative)
    return confine(_user_root(request), relative, must_exist=must_exist)


# ---------------------------------------------------------------------------------------- settings


def _load_settings(root: Path) -> dict[str, Any]:
    path = root / SETTINGS_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _save_settings(root: Path, settings: dict[str, Any]) -> None:
    write_atomically(root / SETTINGS_FILE, json.dumps(settings, indent=4).encode("utf-8"))


async def get_settings(request: Request) -> JSONResponse:
    """The user's settings object (``{}`` when none)."""
    return JSONResponse(await run_in_threadpool(_load_settings, _user_root(request)))


async def get_setting(request: Request) -> JSONResponse:
    """One setting's value, or ``null``."""
    settings = await run_in_threadpool(_load_settings, _user_root(request))
    return JSONResponse(settings.get(request.path_params["setting_id"]))


@describe(body="json", responses={200: "empty body"})
async def post_settings(request: Request) -> Response:
    """Merge a JSON object into the user's settings."""
    update = require_object(await read_json(request), "settings")
    root = _user_root(request)
    lock = request.app.state.services.settings_lock

    def merge() -> None:
        with lock:
            settings = _load_settings(root)
            settings.update(update)
            _save_settings(root, settings)

    await run_in_threadpool(merge)
    return empty_ok()


@describe(body="json", responses={200: "empty body"})
async def post_setting(request: Request) -> Response:
    """Set one setting to the JSON body's value."""
    value = await read_json(request)
    root = _user_root(request)
    key = request.path_params["setting_id"]
    lock = request.app.state.services.settings_lock

    def store() -> None:
        with lock:
            settings = _load_settings(root)
            settings[key] = value
            _save_settings(root, settings)

    await run_in_threadpool(store)
    return empty_ok()


# ---------------------------------------------------------------------------------------- users


async def get_users(request: Request) -> JSONResponse:
    """Storage mode: single-user server storage."""
    return JSONResponse({"storage": "server", "migrated": True})


async def post_users(request: Request) -> JSONResponse:
    """Create a user (not available: graphengine runs single-user)."""
    return JSONResponse({"error": "multi-user mode is not enabled on this server"}, status_code=400)


# ---------------------------------------------------------------------------------------- userdata


def _file_info(path: Path, root: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": stat.st_size, "modified": stat.st_mtime,
            "created": stat.st_ctime}


@describe(query={"dir": "folder (required)", "recurse": "true to include sub-folders",
                 "full_info": "true for {path,size,modified,created}", "split": "true for path parts"})
async def list_userdata(request: Request) -> Response:
    """Files in a user folder (relative paths)."""
    directory = request.query_params.get("dir")
    if not directory:
        return JSONResponse(error_body("invalid_request", "the 'dir' query parameter is required"), status_code=400)
    root = _user_root(request)
    folder = confine_subfolder(root, unquote(directory) if "%" in directory else directory)
    if not folder.is_dir():
        return JSONResponse(error_body("not_found", f"folder {directory!r} does not exist"), status_code=404)
    recurse, full_info, split = bool_query(request, "recurse"), bool_query(request, "full_info"), bool_query(request, "split")

    def listing() -> list[Any]:
        paths = sorted(p for p in (folder.rglob("*") if recurse else folder.iterdir())
                       if p.is_file() and not p.name.startswith(".") and p.resolve().is_relative_to(root))
        out: list[Any] = []
        for path in paths:
            relative = path.relative_to(folder).as_posix()
            if full_info:
                info = _file_info(path, folder)
                out.append(info)
            elif split:
                out.append([relative, *relative.split("/")])
            else:
                out.append(relative)
        return out

    return JSONResponse(await run_in_threadpool(listing))


@describe(query={"path": "folder relative to the user root ('' for the root)"})
async def list_userdata_v2(request: Request) -> JSONResponse:
    """One folder level: ``[{name, path, type: file|directory, size?, modified?}]``."""
    root = _user_root(request)
    relative = request.query_params.get("path") or ""
    folder = confine_subfolder(root, unquote(relative) if "%" in relative else relative)
    if not folder.is_dir():
        return JSONResponse(error_body("not_found", f"folder {relative!r} does not exist"), status_code=404)

    def listing() -> list[dict[str, Any]]:
        out = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or not entry.resolve().is_relative_to(root):
                continue
            item: dict[str, Any] = {"name": entry.name, "path": entry.relative_to(root).as_posix()}
            if entry.is_dir():
                item["type"] = "directory"
            else:
                stat = entry.stat()
                item.update(type="file", size=stat.st_size, modified=stat.st_mtime)
            out.append(item)
        return out

    return JSONResponse(await run_in_threadpool(listing))


async def get_userdata_file(request: Request) -> Response:
    """A user file's bytes."""
    path = _user_path(request, request.path_params["file"], must_exist=True)
    if not path.is_file():
        raise PathRejected("not a file", 404)
    data = await run_in_threadpool(path.read_bytes)
    media_type = "application/json" if path.suffix == ".json" else "application/octet-stream"
    return Response(data, media_type=media_type)


@describe(body="raw", query={"overwrite": "default true; false → 409 if it exists",
                             "full_info": "true to answer with file info"},
          responses={200: "relative path (JSON string) or file info", 409: "exists"})
async def post_userdata_file(request: Request) -> Response:
    """Write a user file from the raw request body."""
    path = _user_path(request, request.path_params["file"])
    overwrite = bool_query(request, "overwrite", default=True)
    if path.exists() and (not overwrite or path.is_dir()):
        return JSONResponse(error_body("conflict", "file exists"), status_code=409)
    data = await request.body()
    root = _user_root(request)

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        confine(root, path.relative_to(root).as_posix())  # parents may not be symlinks out
        write_atomically(path, data)

    await run_in_threadpool(write)
    if bool_query(request, "full_info"):
        return JSONResponse(_file_info(path, root))
    return JSONResponse(path.relative_to(root).as_posix())


async def delete_userdata_file(request: Request) -> Response:
    """Delete a user file (204)."""
    path = _user_path(request, request.path_params["file"], must_exist=True)
    if not path.is_file():
        raise PathRejected("not a file", 404)
    await run_in_threadpool(path.unlink)
    return Response(status_code=204)


@describe(query={"overwrite": "default true", "full_info": "true to answer with file info"},
          responses={200: "new relative path or file info", 409: "destination exists"})
async def move_userdata_file(request: Request) -> Response:
    """Move/rename a user file."""
    source = _user_path(request, request.path_params["file"], must_exist=True)
    dest = _user_path(request, request.path_params["dest"])
    if not source.is_file():
        raise PathRejected("not a file", 404)
    if dest.exists() and not bool_query(request, "overwrite", default=True):
        return JSONResponse(error_body("conflict", "destination exists"), status_code=409)
    root = _user_root(request)

    def move() -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, dest)

    await run_in_threadpool(move)
    if bool_query(request, "full_info"):
        return JSONResponse(_file_info(dest, root))
    return JSONResponse(dest.relative_to(root).as_posix())


def routes() -> list[BaseRoute]:
    return [
        Route("/settings", get_settings, methods=["GET"]),
        Route("/settings", post_settings, methods=["POST"]),
        Route("/settings/{setting_id}", get_setting, methods=["GET"]),
        Route("/settings/{setting_id}", post_setting, methods=["POST"]),
        Route("/users", get_users, methods=["GET"]),
        Route("/users", post_users, methods=["POST"]),
        Route("/userdata", list_userdata, methods=["GET"]),
        Route("/v2/userdata", list_userdata_v2, methods=["GET"]),
        Route("/userdata/{file:path}/move/{dest:path}", move_userdata_file, methods=["POST"]),
        Route("/userdata/{file:path}", get_userdata_file, methods=["GET"]),
        Route("/userdata/{file:path}", post_userdata_file, methods=["POST"]),
        Route("/userdata/{file:path}", delete_userdata_file, methods=["DELETE"]),
    ]

