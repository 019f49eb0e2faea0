"""The app factory: ``create_app(config, engine=None)`` builds services, routes and middleware.

Route modules: this package's ComfyUI surfaces (comfy, files, userdata, jobs, websocket), each served
at ``P`` and ``/api`` + ``P`` (except ``/internal/*``), plus optional modules of other surfaces
(templates, A1111 ``/sdapi``, OpenAI images, admin) mounted as they are when present. One auth gate
covers all of them; the OpenAPI document is generated from the final route table.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from graphengine.environment import DataPaths
from graphengine.http import comfy_routes, files_routes, jobs_routes, openapi, userdata_routes
from graphengine.http.access_log import AccessLogMiddleware
from graphengine.http.auth import AuthGate, AuthMiddleware
from graphengine.http.config import ServerConfig
from graphengine.http.errors import EXCEPTION_HANDLERS
from graphengine.http.limits import BodyLimitMiddleware
from graphengine.http.security import SecurityMiddleware
from graphengine.http.services import ServerServices
from graphengine.http.ws import WebSocketHub, websocket_endpoint
from graphengine.queue import InProcessExecutor, PromptQueue

if TYPE_CHECKING:
    from graphengine.engine import Engine

log = logging.getLogger(__name__)

OPTIONAL_ROUTE_MODULES = (
    "graphengine.http.templates_routes",
    "graphengine.http.sdapi",
    "graphengine.http.openai_images",
    "graphengine.http.admin",
)
UNALIASED_PREFIXES = ("/internal", "/api/")


def build_engine(config: ServerConfig) -> Engine:
    """The engine for ``config``: the built-in packs, or the named pack modules (tests)."""
    from graphengine.engine import Engine, build_environment
    from graphengine.environment import Limits, PreviewSettings, default_models_dir

    env = build_environment(
        config.data_dir,
        config.models_dir or default_models_dir(config.data_dir),
        limits=Limits(max_image_pixels=config.max_image_pixels, max_upload_bytes=config.max_upload_bytes),
        preview=PreviewSettings(method=config.preview_method, max_size=config.preview_size),
    )
    packs = list(config.node_packs) if config.node_packs is not None else None
    return Engine(packs=packs, cache=config.cache, env=env)


def _interrupt_flag() -> Any:
    from graphengine.interrupt import InterruptFlag

    return InterruptFlag()


def build_services(config: ServerConfig, engine: Engine | None = None) -> ServerServices:
    engine = engine if engine is not None else build_engine(config)
    paths: DataPaths = engine.env.paths if engine.env is not None else DataPaths.under(config.data_dir)
    paths.create()
    config.user_dir.mkdir(parents=True, exist_ok=True)
    flags = {"supports_preview_metadata": True, "max_upload_size": config.max_upload_bytes}
    hub = WebSocketHub(
        server_flags=flags,
        max_messages=config.ws_max_messages,
        max_bytes=config.ws_max_bytes,
        legacy_preview_frames=config.legacy_preview_frames,
    )
    queue = PromptQueue(
        config.database_path,
        validator=engine,
        executor=InProcessExecutor(engine),
        interrupt=_interrupt_flag(),
        observer=hub,
        max_history=config.max_history,
    )
    return ServerServices(config=config, engine=engine, queue=queue, hub=hub, gate=AuthGate(config.auth), paths=paths)


def _aliased(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Each route at ``P`` and at ``/api`` + ``P`` (ComfyUI serves both), except /internal."""
    out: list[BaseRoute] = list(routes)
    for route in routes:
        path = getattr(route, "path", "")
        if not path or path.startswith(UNALIASED_PREFIXES):
            continue
        if isinstance(route, Route):
            methods = sorted(m for m in (route.methods or ()) if m != "HEAD") or None
            out.append(Route("/api" + path, route.endpoint, methods=methods, include_in_schema=route.include_in_schema))
        elif isinstance(route, WebSocketRoute):
            out.append(WebSocketRoute("/api" + path, route.endpoint))
    return out


def _optional_modules() -> tuple[list[BaseRoute], list[dict[str, Any]], frozenset[str]]:
    routes: list[BaseRoute] = []
    docs: list[dict[str, Any]] = []
    public: set[str] = set()
    for name in OPTIONAL_ROUTE_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            module = importlib.import_module(name)
            routes.extend(module.routes())
            if hasattr(module, "openapi_paths"):
                docs.append(module.openapi_paths())
            if hasattr(module, "public_paths"):
                public.update(module.public_paths())
        except Exception:  # noqa: BLE001 - a broken optional surface must not take the server down
            log.exception("could not mount routes from %s; that API surface is unavailable", name)
    return routes, docs, frozenset(public)


async def _index(request: Request) -> JSONResponse:
    """Server identity and where to find the API documentation."""
    return JSONResponse(
        {"name": "graphengine", "docs": "/docs", "openapi": "/openapi.json", "templates_ui": "/templates-ui/"}
    )


def create_app(config: ServerConfig, engine: Engine | None = None) -> Starlette:
    """The Starlette app of one server. ``app.state.services`` holds its ``ServerServices``."""
    services = build_services(config, engine)
    own: list[BaseRoute] = [
        *comfy_routes.routes(),
        *files_routes.routes(),
        *userdata_routes.routes(),
        *jobs_routes.routes(),
        WebSocketRoute("/ws", websocket_endpoint),
    ]
    internal = files_routes.internal_routes()
    mounted, mounted_docs, public_paths = _optional_modules()
    routes = [*_aliased(own), *internal, *mounted, *openapi.routes()]
    if not any(getattr(r, "path", None) == "/" for r in routes):
        routes.append(Route("/", _index, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.hub.bind(asyncio.get_running_loop())
        if config.clear_temp_on_start:
            _clear_directory(services.paths.temp_dir)
        services.queue.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, services.queue.close)
            await services.hub.close()
            if config.clear_temp_on_start:
                _clear_directory(services.paths.temp_dir)

    middleware = [
        Middleware(AccessLogMiddleware),
        Middleware(SecurityMiddleware, check_host=not config.is_public or bool(config.allowed_hosts),
                   allowed_hosts=config.allowed_hosts + ((config.host,) if not config.is_public else ()),
                   cors_origin=config.cors_origin),
        Middleware(AuthMiddleware, gate=services.gate, public_paths=public_paths),
        Middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes + 64 * 1024),
    ]
    handlers: dict[Any, Callable[..., Any]] = dict(EXCEPTION_HANDLERS)
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)
    app.state.services = services
    from graphengine import __version__

    app.state.openapi = openapi.build_openapi(app.routes, mounted_docs, version=__version__)
    return app


def _clear_directory(directory: Any) -> None:
    if directory.is_dir():
        for entry in directory.iterdir():
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError:
                log.warning("could not remove %s from the temp folder", entry)
