"""The one authentication gate: every HTTP route and the websocket pass through it.

Modes: ``none`` (any ``Authorization`` header is ignored, as SillyTavern sends junk), ``basic`` (user and
password) and ``bearer`` (a token; a Basic header whose password is the token is accepted too, for
clients that only speak Basic). Browsers cannot set headers on websockets, so the websocket upgrade
also accepts the token as ``?token=``. Secrets are compared in constant time and never echoed or logged
(the access log records paths without query strings).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from graphengine.http.config import AuthSettings, is_loopback_host
from graphengine.http.responses import deny_websocket, send_json_error


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def _basic_credentials(value: str) -> tuple[str, str] | None:
    scheme, _, payload = value.partition(" ")
    if scheme.lower() != "basic" or not payload.strip():
        return None
    try:
        decoded = base64.b64decode(payload.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _bearer_token(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class AuthGate:
    """Decides whether a request is authenticated, and whether it may use admin routes."""

    def __init__(self, settings: AuthSettings):
        self.settings = settings

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def challenge(self) -> str:
        return 'Basic realm="graphengine", charset="UTF-8"' if self.mode == "basic" else 'Bearer realm="graphengine"'

    def authenticated(self, headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> bool:
        settings = self.settings
        if settings.mode == "none":
            return True
        header = headers.get("authorization", "")
        if settings.mode == "basic":
            creds = _basic_credentials(header)
            return bool(creds) and _same(creds[0], settings.user or "") & _same(creds[1], settings.password or "")
        token = _bearer_token(header)
        if token is None:
            creds = _basic_credentials(header)
            token = creds[1] if creds else None
        if token is None and query is not None:
            token = query.get("token")
        return token is not None and _same(token, settings.token or "")

    def is_admin(self, connection: HTTPConnection) -> bool:
        """Admin routes: the admin token when one is configured (``Authorization: Bearer`` or
        ``X-Admin-Token``); otherwise any authenticated user when auth is on; otherwise loopback clients."""
        settings = self.settings
        if settings.admin_token:
            candidates = (_bearer_token(connection.headers.get("authorization", "")) or "",
                          connection.headers.get("x-admin-token", ""))
            matches = [_same(given, settings.admin_token) for given in candidates if given]
            return any(matches)
        if settings.mode != "none":
            return self.authenticated(connection.headers)
        client = connection.client
        return client is not None and is_loopback_host(client.host)

    def require_admin(self, connection: HTTPConnection) -> None:
        """Raise 401/403 unless the request carries the admin credential."""
        if not self.is_admin(connection):
            if self.settings.admin_token or self.settings.mode != "none":
                raise HTTPException(401, "admin credentials required", headers={"WWW-Authenticate": self.challenge})
            raise HTTPException(403, "admin routes are only available from this machine without --admin-token")


class AuthMiddleware:
    """ASGI middleware applying ``AuthGate`` to every HTTP request and websocket upgrade.

    ``public_paths``: static page files (declared by route modules through ``public_paths()``) that a
    GET/HEAD may fetch without credentials in bearer mode only, where the browser cannot prompt for a
    token; basic mode keeps them gated so the browser's own login prompt appears.
    """

    def __init__(self, app: ASGIApp, gate: AuthGate, public_paths: frozenset[str] = frozenset()):
        self.app = app
        self.gate = gate
        self.public_paths = public_paths

    def _is_public(self, scope: Scope) -> bool:
        return (
            self.gate.mode == "bearer"
            and scope["type"] == "http"
            and scope.get("method") in ("GET", "HEAD")
            and scope.get("path") in self.public_paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.gate.mode == "none" or self._is_public(scope):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = None
        if scope["type"] == "websocket":
            parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            query = {k: v[0] for k, v in parsed.items() if v}
        if self.gate.authenticated(headers, query):
            await self.app(scope, receive, send)
            return
        challenge = {"WWW-Authenticate": self.gate.challenge}
        if scope["type"] == "websocket":
            await deny_websocket(scope, send, 401, "unauthorized", "authentication required", challenge)
        else:
            await send_json_error(send, 401, "unauthorized", "authentication required", challenge)
