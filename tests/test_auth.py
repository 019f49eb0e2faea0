"""Auth: every route of the route table (mounted modules included) and the websocket behind one gate.

The route list is generated from the live app, so a new route cannot skip the gate unnoticed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re

import httpx
import pytest
import websockets
from starlette.routing import Route, WebSocketRoute

from graphengine.http.config import AuthSettings, ServerConfig
from graphengine.http.templates_routes import public_paths
from tests.http_harness import LiveServer, connect, server_config

USER, PASSWORD, TOKEN = "alice", "s3cret-pass-Σ", "tok-3f9c1e7d5a"
ADMIN_TOKEN = "admin-77ab12"
OWN_MODULES = re.compile(r"^graphengine\.http\.(comfy_routes|files_routes|userdata_routes|jobs_routes|openapi|app|ws)$")


PUBLIC_PAGE_FILES = public_paths()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


MODES = {
    "none": (AuthSettings(), {"Authorization": "Basic dW5kZWZpbmVk"}, None),  # SillyTavern's junk header
    "basic": (AuthSettings(mode="basic", user=USER, password=PASSWORD), {"Authorization": _basic(USER, PASSWORD)},
              [{}, {"Authorization": _basic(USER, "wrong")}, {"Authorization": "Basic"},
               {"Authorization": "Bearer s3cret"}, {"Authorization": "Basic !!!notbase64"}]),
    "bearer": (AuthSettings(mode="bearer", token=TOKEN, admin_token=ADMIN_TOKEN),
               {"Authorization": f"Bearer {TOKEN}", "X-Admin-Token": ADMIN_TOKEN},
               [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": _basic("any", "nope")}]),
}


@pytest.fixture(scope="module", params=list(MODES))
def gated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, LiveServer]:
    settings = MODES[request.param][0]
    with LiveServer(server_config(tmp_path_factory.mktemp(f"auth-{request.param}"), auth=settings)) as live:
        yield request.param, live


def _http_routes(live: LiveServer) -> list[tuple[str, str, bool]]:
    out = []
    for route in live.app.routes:
        if isinstance(route, Route):
            path = re.sub(r"{[^}]+}", "x", route.path)
            own = bool(OWN_MODULES.match(getattr(route.endpoint, "__module__", "")))
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    out.append((method, path, own))
    return out


def test_every_http_route_is_gated(gated: tuple[str, LiveServer], caplog: pytest.LogCaptureFixture) -> None:
    mode, live = gated
    _, good, bad_headers = MODES[mode]
    routes = _http_routes(live)
    assert len(routes) > 60  # the whole table, /api aliases and mounted modules included
    caplog.set_level(logging.DEBUG)
    bodies = []
    with live.client() as client:
        for method, path, own in routes:
            if mode == "bearer" and path in PUBLIC_PAGE_FILES:
                page = client.request(method, path)
                assert page.status_code == 200, (method, path)  # static page, no data, no credentials
                continue
            if mode != "none":
                for headers in bad_headers if path == "/prompt" else bad_headers[:2]:
                    denied = client.request(method, path, headers=headers)
                    assert denied.status_code == 401, (method, path, headers, denied.status_code)
                    assert "www-authenticate" in denied.headers
                    bodies.append(denied.text)
            allowed = client.request(method, path, headers=good)
            assert allowed.status_code != 401, (method, path)
            if own:  # our handlers answer bad/missing input with 4xx, never 500
                assert allowed.status_code < 500, (method, path, allowed.status_code, allowed.text)
            bodies.append(allowed.text)
            bodies.extend(f"{k}: {v}" for k, v in allowed.headers.items())
    for secret in (PASSWORD, TOKEN, ADMIN_TOKEN, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert not any(secret in body for body in bodies)
        assert not any(secret in record.getMessage() for record in caplog.records)


def test_websocket_is_gated(gated: tuple[str, LiveServer]) -> None:
    mode, live = gated
    _, good, bad_headers = MODES[mode]
    ws_paths = [route.path for route in live.app.routes if isinstance(route, WebSocketRoute)]
    assert "/ws" in ws_paths and "/api/ws" in ws_paths

    async def status(path: str, headers: dict[str, str], query: str = "") -> int:
        try:
            async with connect(f"ws://127.0.0.1:{live.port}{path}?clientId=c1{query}", additional_headers=headers) as ws:
                await ws.recv()
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    for path in ws_paths:
        assert asyncio.run(status(path, good)) == 101
        if mode != "none":
            for headers in bad_headers:
                assert asyncio.run(status(path, headers)) == 401
    if mode == "bearer":  # browsers cannot set headers on websockets: ?token= works for the upgrade only
        assert asyncio.run(status("/ws", {}, f"&token={TOKEN}")) == 101
        with live.client() as client:
            assert client.get(f"/prompt?token={TOKEN}").status_code == 401


def test_admin_credential(gated: tuple[str, LiveServer]) -> None:
    mode, live = gated
    gate = live.services.gate
    from starlette.requests import HTTPConnection

    def connection(headers: dict[str, str], client: str = "127.0.0.1") -> HTTPConnection:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return HTTPConnection({"type": "http", "headers": raw, "client": (client, 1234)})

    if mode == "none":
        assert gate.is_admin(connection({})) and not gate.is_admin(connection({}, "10.1.2.3"))
    elif mode == "basic":
        assert gate.is_admin(connection({"Authorization": _basic(USER, PASSWORD)}))
        assert not gate.is_admin(connection({"Authorization": _basic(USER, "x")}))
    else:
        assert not gate.is_admin(connection({"Authorization": f"Bearer {TOKEN}"}))  # user token is not admin
        assert gate.is_admin(connection({"Authorization": f"Bearer {ADMIN_TOKEN}"}))
        assert gate.is_admin(connection({"X-Admin-Token": ADMIN_TOKEN}))


def test_public_bind_without_auth_refuses_to_start(tmp_path) -> None:
    with pytest.raises(ValueError, match="--auth"):
        ServerConfig(host="0.0.0.0", data_dir=tmp_path).check_startable()
    ServerConfig(host="0.0.0.0", data_dir=tmp_path, allow_insecure_public=True).check_startable()
    ServerConfig(host="0.0.0.0", data_dir=tmp_path, auth=AuthSettings(mode="bearer", token="t")).check_startable()
    ServerConfig(host="127.0.0.1", data_dir=tmp_path).check_startable()
    with pytest.raises(ValueError):
        AuthSettings(mode="basic", user="u")
    assert TOKEN not in repr(AuthSettings(mode="bearer", token=TOKEN))


def test_unreachable_without_credentials_even_for_docs(gated: tuple[str, LiveServer]) -> None:
    mode, live = gated
    if mode == "none":
        pytest.skip("no credentials in this mode")
    for path in ("/docs", "/openapi.json", "/", "/nothing-here"):
        assert httpx.get(live.base + path).status_code == 401


def test_only_static_page_files_are_public(gated: tuple[str, LiveServer]) -> None:
    """In bearer mode the editor page's static files load without a token (the page then asks for it);
    everything with data stays gated, and basic mode gates the page too (the browser prompts)."""
    mode, live = gated
    assert PUBLIC_PAGE_FILES == {"/templates-ui/", "/templates-ui/index.html", "/templates-ui/app.js",
                                 "/templates-ui/style.css"}
    with live.client() as client:
        page = client.get("/templates-ui/")
        assert page.status_code == (401 if mode == "basic" else 200)
        for data_path in ("/templates", "/templates/text-to-image", "/history", "/templates-ui/../templates"):
            response = client.get(data_path)
            assert response.status_code == (200 if mode == "none" else 401), (mode, data_path)
        assert client.post("/templates-ui/").status_code in ((401,) if mode != "none" else (405, 404))
