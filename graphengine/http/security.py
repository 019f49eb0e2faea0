"""Host/Origin checks against cross-site requests and DNS rebinding, CORS, and safe default headers.

* **Host** (DNS rebinding): when the server listens on loopback, the ``Host`` header must name a
  loopback address or one of ``allowed_hosts``; a page on ``evil.example`` rebinding its name to
  127.0.0.1 is refused on every route.
* **Origin** (CSRF): on every state-changing request (anything but GET/HEAD/OPTIONS) and on the
  websocket upgrade, an ``Origin`` header must match the ``Host`` (ComfyUI's rule: ports compared only
  when both sides have one) or the configured CORS origin. ``Origin: null`` (sandboxed frames,
  ``file://`` pages) is refused. Requests without ``Origin`` (scripts, curl) pass.
* **CORS** (``cors_origin``, ComfyUI's ``--enable-cors-header``): responses carry the
  ``Access-Control-Allow-*`` headers and ``OPTIONS`` preflights are answered 200 without a handler.
* Every response gets ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graphengine.http.config import is_loopback_host
from graphengine.http.responses import deny_websocket, send_json_error

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _split_host_port(netloc: str) -> tuple[str, str | None]:
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return host, port or None
    host, sep, port = netloc.rpartition(":")
    if not sep or not port.isdigit():
        return netloc, None
    return host, port


def origin_matches_host(origin: str, host: str) -> bool:
    """ComfyUI's comparison: hostnames equal, ports too unless either side omits its port."""
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return False
    o_host, o_port = _split_host_port(parts.netloc)
    h_host, h_port = _split_host_port(host)
    if o_host != h_host:
        return False
    return o_port is None or h_port is None or o_port == h_port


class SecurityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        check_host: bool,
        allowed_hosts: tuple[str, ...] = (),
        cors_origin: str | None = None,
    ):
        self.app = app
        self.check_host = check_host
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.cors_origin = cors_origin

    def _host_allowed(self, host: str) -> bool:
        name, _ = _split_host_port(host)
        return is_loopback_host(name) or name in self.allowed_hosts or host.lower() in self.allowed_hosts

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        if self.cors_origin == "*":
            return True
        if origin.strip().lower() == "null":
            return False
        if self.cors_origin and origin.rstrip("/") == self.cors_origin.rstrip("/"):
            return True
        if host is not None and origin_matches_host(origin, host):
            return True
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc.lower() in self.allowed_hosts

    def _cors_headers(self) -> list[tuple[bytes, bytes]]:
        if not self.cors_origin:
            return []
        return [
            (b"access-control-allow-origin", self.cors_origin.encode("latin-1")),
            (b"access-control-allow-methods", b"POST, GET, DELETE, PUT, OPTIONS, PATCH"),
            (b"access-control-allow-headers", b"Content-Type, Authorization"),
            (b"access-control-allow-credentials", b"true"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host")
        origin = headers.get("origin")
        method = scope.get("method", "GET") if kind == "http" else "WEBSOCKET"

        if self.check_host and host is not None and not self._host_allowed(host):
            log.warning("refused a request for an unexpected Host header (possible DNS rebinding)")
            message = "Host header not allowed; add the name with --allowed-host if a proxy forwards it"
            await self._deny(scope, send, "host_not_allowed", message)
            return
        if kind == "http" and method == "OPTIONS":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"0"), *self._cors_headers()]})
            await send({"type": "http.response.body", "body": b""})
            return
        if method not in SAFE_METHODS and origin is not None and not self._origin_allowed(origin, host):
            log.warning("refused a cross-origin %s request (origin does not match host)", method)
            await self._deny(scope, send, "origin_not_allowed", "cross-origin request refused: Origin does not match Host")
            return

        extra = [(b"x-content-type-options", b"nosniff"), *self._cors_headers()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                   *[(k, v) for k, v in extra if k not in present]]}
            await send(message)

        await self.app(scope, receive, send_with_headers if kind == "http" else send)

    @staticmethod
    async def _deny(scope: Scope, send: Send, kind: str, message: str) -> None:
        if scope["type"] == "websocket":
            await deny_websocket(scope, send, 403, kind, message)
        else:
            await send_json_error(send, 403, kind, message)
