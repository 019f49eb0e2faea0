"""`graphengine serve`: the ComfyUI-compatible HTTP + websocket server (``python server.py`` is the same).

Credentials come from flags or the environment (``GRAPHENGINE_AUTH``, ``GRAPHENGINE_AUTH_USER``,
``GRAPHENGINE_AUTH_PASSWORD``, ``GRAPHENGINE_AUTH_TOKEN``, ``GRAPHENGINE_ADMIN_TOKEN``); prefer the
environment for secrets, since flags are visible in the process list. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from graphengine.commands.options import add_location_options, data_dir

log = logging.getLogger(__name__)

ENV_PREFIX = "GRAPHENGINE_"


def _env(name: str) -> str | None:
    value = os.environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the ComfyUI-compatible HTTP/websocket server",
        description="Serve the ComfyUI API (also under /api), the websocket event stream, OpenAPI docs at /docs "
        "and any other installed API surfaces.",
    )
    parser.add_argument("--host", dest="host", default=_env("HOST") or "127.0.0.1",
                        help="address to bind (default 127.0.0.1; a public address requires --auth)")
    parser.add_argument("--listen", dest="host", nargs="?", const="0.0.0.0", metavar="HOST",
                        help="ComfyUI's spelling of --host; bare --listen binds 0.0.0.0")
    parser.add_argument("--port", type=int, default=int(_env("PORT") or 8188), help="port (default 8188)")
    add_location_options(parser)
    auth = parser.add_argument_group("authentication (one gate for every route and the websocket)")
    auth.add_argument("--auth", choices=("none", "basic", "bearer"), default=None,
                      help="auth mode (default $GRAPHENGINE_AUTH or none)")
    auth.add_argument("--auth-user", default=None, help="user name for basic auth ($GRAPHENGINE_AUTH_USER)")
    auth.add_argument("--auth-password", default=None,
                      help="password for basic auth ($GRAPHENGINE_AUTH_PASSWORD is safer: flags show in ps)")
    auth.add_argument("--auth-token", default=None, help="token for bearer auth ($GRAPHENGINE_AUTH_TOKEN)")
    auth.add_argument("--admin-token", default=None, help="separate credential for admin routes ($GRAPHENGINE_ADMIN_TOKEN)")
    auth.add_argument("--allow-insecure-public", action="store_true",
                      help="allow a non-loopback bind without authentication (e.g. behind an auth proxy)")
    net = parser.add_argument_group("network")
    net.add_argument("--tls-keyfile", type=Path, default=None, help="serve HTTPS/WSS with this key (needs --tls-certfile)")
    net.add_argument("--tls-certfile", type=Path, default=None, help="certificate for --tls-keyfile")
    net.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                     help="extra Host header name to accept (reverse proxies); repeatable")
    net.add_argument("--enable-cors-header", nargs="?", const="*", default=None, metavar="ORIGIN",
                     help="send CORS headers for ORIGIN (bare flag: '*', which also disables the origin check)")
    limits = parser.add_argument_group("limits and behaviour")
    limits.add_argument("--max-upload-size", type=float, default=100.0, help="request body cap in MB (default 100)")
    limits.add_argument("--max-image-pixels", type=int, default=64 * 1024 * 1024,
                        help="decoded image pixel cap (default 67108864)")
    limits.add_argument("--cache", default="classic", help="classic (default) | 'lru N' | ram | none")
    limits.add_argument("--preview-method", choices=("none", "auto", "latent2rgb", "taesd"), default="none")
    limits.add_argument("--preview-size", type=int, default=512)
    limits.add_argument("--preview-frames-for-legacy-clients", action="store_true",
                        help="also send latent previews as type-1 binary frames to clients that did not opt in")
    limits.add_argument("--max-history", type=int, default=10_000, help="history entries kept (default 10000)")
    downstream = parser.add_argument_group("downstream image servers (/admin/register/image)")
    downstream.add_argument("--downstream-allow-link-local", action="store_true",
                            default=(_env("DOWNSTREAM_ALLOW_LINK_LOCAL") or "").lower() in ("1", "true", "yes"),
                            help="allow registering link-local and cloud-metadata addresses "
                            "($GRAPHENGINE_DOWNSTREAM_ALLOW_LINK_LOCAL)")
    downstream.add_argument("--downstream-health-interval", type=float, default=30.0, metavar="SECONDS",
                            help="seconds between health checks of registered servers (default 30)")
    parser.add_argument("--node-packs", default=_env("NODE_PACKS"), help=argparse.SUPPRESS)  # tests: "tests.fakes"
    parser.set_defaults(handler=_handle)


def build_config(args: argparse.Namespace):  # -> ServerConfig (imported lazily)
    from graphengine.http.config import AuthSettings, ServerConfig

    auth = AuthSettings(
        mode=args.auth or _env("AUTH") or "none",
        user=args.auth_user or _env("AUTH_USER"),
        password=args.auth_password or _env("AUTH_PASSWORD"),
        token=args.auth_token or _env("AUTH_TOKEN"),
        admin_token=args.admin_token or _env("ADMIN_TOKEN"),
    )
    packs = tuple(p.strip() for p in args.node_packs.split(",") if p.strip()) if args.node_packs else None
    return ServerConfig(
        host=args.host,
        port=args.port,
        data_dir=data_dir(args),
        models_dir=args.models_dir.resolve() if args.models_dir else None,
        auth=auth,
        allow_insecure_public=args.allow_insecure_public,
        allowed_hosts=tuple(args.allowed_host),
        cors_origin=args.enable_cors_header,
        max_upload_bytes=int(args.max_upload_size * 1024 * 1024),
        max_image_pixels=args.max_image_pixels,
        node_packs=packs,
        cache=args.cache,
        preview_method=args.preview_method,
        preview_size=args.preview_size,
        legacy_preview_frames=args.preview_frames_for_legacy_clients,
        max_history=args.max_history,
        downstream_allow_link_local=args.downstream_allow_link_local,
        downstream_health_interval=args.downstream_health_interval,
    )


def _handle(args: argparse.Namespace) -> int:
    try:
        if (args.tls_keyfile is None) != (args.tls_certfile is None):
            raise ValueError("--tls-keyfile and --tls-certfile must be given together")
        config = build_config(args)
        config.check_startable()
    except ValueError as exc:
        print(f"graphengine serve: {exc}", file=sys.stderr)  # noqa: T201 - user-facing CLI error
        return 2
    import uvicorn

    from graphengine.http.app import create_app

    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    level = logging.getLogger().getEffectiveLevel()
    log.warning("graphengine serving on %s://%s:%d (auth: %s, data: %s)", "https" if args.tls_certfile else "http",
                config.host if ":" not in config.host else f"[{config.host}]", config.port,
                config.auth.mode, config.data_dir)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        access_log=False,  # our own access log never records query strings (tokens)
        log_level=max(level, logging.INFO) if level != logging.NOTSET else logging.INFO,
        ws_max_size=16 * 1024 * 1024,
        timeout_graceful_shutdown=5,
        lifespan="on",
        ssl_keyfile=str(args.tls_keyfile) if args.tls_keyfile else None,
        ssl_certfile=str(args.tls_certfile) if args.tls_certfile else None,
    )
    return 0
