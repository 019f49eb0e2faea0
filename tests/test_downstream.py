"""Downstream image servers: the address guard, and routing across two real graphengine servers on
loopback ports (least loaded, one dying mid-request, all gone), admin credentials, no credential leak."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from graphengine.downstream.addresses import AddressRefused, check_url, normalize_url
from graphengine.http.admin import registry_of
from graphengine.http.config import AuthSettings
from tests import a1111_bodies as bodies
from tests.a1111_server import decode_png, history_count, make_models, pipeline_server
from tests.http_harness import LiveServer, free_port, server_config

# ------------------------------------------------------------------------------------ address guard


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://localhost:7860", "http://localhost:7860/"),
        ("127.0.0.1:7860", "http://127.0.0.1:7860/"),
        (" https://gpu.example.com/sd ", "https://gpu.example.com/sd/"),
        ("http://[::1]:8188/", "http://[::1]:8188/"),
    ],
)
def test_urls_are_normalised_like_sd_proxy(text: str, expected: str) -> None:
    assert normalize_url(text) == expected


@pytest.mark.parametrize(
    "text",
    ["ftp://host/", "http://user:pass@host/", "", "http://host/?x=1", "http://:80/", "file:///etc/passwd"],
)
def test_malformed_urls_are_refused(text: str) -> None:
    with pytest.raises(AddressRefused):
        normalize_url(text)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",  # AWS/GCP/Azure metadata
        "http://169.254.10.1:7860/",  # link-local
        "http://[fe80::1]:7860/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",  # Alibaba metadata
        "http://metadata.google.internal/",
        "http://0.0.0.0:7860/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_link_local_and_metadata_addresses_are_refused(url: str) -> None:
    with pytest.raises(AddressRefused):
        check_url(url)


def test_link_local_is_allowed_only_when_asked() -> None:
    check_url("http://169.254.10.1:7860/", allow_link_local=True)
    check_url("http://127.0.0.1:7860/")
    check_url("http://localhost:7860/")


# ------------------------------------------------------------------------------------------ routing


def kill(live: LiveServer) -> None:
    """The server dies: every open connection is reset, then it stops without waiting."""
    server = live.server
    loop = server.servers[0].get_loop()

    def abort_connections() -> None:
        for connection in list(server.server_state.connections):
            connection.transport.abort()

    loop.call_soon_threadsafe(abort_connections)
    server.force_exit = True
    server.should_exit = True
    live.thread.join(20)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_models(tmp_path_factory.mktemp("downstream_models") / "models")


def register(client: httpx.Client, url: str) -> httpx.Response:
    return client.post("/admin/register/image", content=url.encode(), headers={"Content-Type": "text/plain"})


def running_on(servers: list[LiveServer]) -> LiveServer | None:
    for live in servers:
        state = httpx.get(live.base + "/sdapi/v1/progress", timeout=5).json()["state"]
        if state["sampling_steps"] > 1 and state["job_count"] >= 1:
            return live
    return None


@pytest.mark.slow
def test_routing_across_two_servers_with_one_dying_mid_request(tmp_path: Path, models_dir: Path) -> None:
    a = pipeline_server(tmp_path / "a", models_dir).start()
    b = pipeline_server(tmp_path / "b", models_dir).start()
    proxy = LiveServer(server_config(tmp_path / "proxy", node_packs=("nodes.utility",))).start()
    try:
        with httpx.Client(base_url=proxy.base, timeout=120) as client:
            for live in (a, b):
                answer = register(client, live.base)
                assert answer.status_code == 200, answer.text
                assert answer.json()["message"] == "URL registered successfully"
                assert answer.json()["url"] == live.base + "/"
            listed = client.get("/admin/servers").json()
            assert listed["image"] == [a.base + "/", b.base + "/"] and all(s["healthy"] for s in listed["servers"])

            # one request: served downstream (the proxy has no model at all), answered OpenAI-style
            before = history_count(httpx.Client(base_url=a.base)) + history_count(httpx.Client(base_url=b.base))
            body = {"prompt": "a red bicycle", "n": 1, "size": "64x64", "response_format": "b64_json", "steps": 2}
            response = client.post("/v1/images/generations", json=body)
            assert response.status_code == 200, response.text
            data = response.json()
            assert isinstance(data["created"], int) and decode_png(data["data"][0]["b64_json"]).size == (64, 64)
            after = history_count(httpx.Client(base_url=a.base)) + history_count(httpx.Client(base_url=b.base))
            assert after == before + 1

            # url format: a /view URL of the proxy
            response = client.post("/v1/images/generations", json=body | {"response_format": "url"})
            url = response.json()["data"][0]["url"]
            assert url.startswith(proxy.base + "/view?")
            assert httpx.get(url).content.startswith(b"\x89PNG")

            # two requests at once go to different servers (least loaded)
            slow = {"prompt": "a slow one", "size": "64x64", "steps": 40, "response_format": "b64_json"}
            counts = [history_count(httpx.Client(base_url=s.base)) for s in (a, b)]
            results: list[httpx.Response] = []

            def post() -> None:
                with httpx.Client(base_url=proxy.base, timeout=120) as other:
                    results.append(other.post("/v1/images/generations", json=slow))

            threads = [threading.Thread(target=post) for _ in range(2)]
            threads[0].start()
            time.sleep(0.5)
            threads[1].start()
            for thread in threads:
                thread.join(120)
            assert [r.status_code for r in results] == [200, 200]
            assert [history_count(httpx.Client(base_url=s.base)) - c for s, c in zip((a, b), counts)] == [1, 1]

            # the server running a request dies: the request is retried once on the other one
            result: dict[str, Any] = {}
            thread = threading.Thread(target=lambda: result.update(r=httpx.post(
                proxy.base + "/v1/images/generations", json=slow | {"steps": 80}, timeout=120)))
            thread.start()
            victim = None
            deadline = time.monotonic() + 60
            while victim is None and time.monotonic() < deadline:
                victim = running_on([a, b])
                time.sleep(0.05)
            assert victim is not None, "the request never started downstream"
            survivor = b if victim is a else a
            kill(victim)
            thread.join(120)
            assert result["r"].status_code == 200, result["r"].text
            assert decode_png(result["r"].json()["data"][0]["b64_json"]).size == (64, 64)
            status = {s["url"]: s for s in client.get("/admin/servers").json()["servers"]}
            assert status[victim.base + "/"]["healthy"] is False and status[victim.base + "/"]["last_error"]
            assert status[survivor.base + "/"]["healthy"] is True

            # nothing healthy is left, and the proxy has no model: a clear error, not a hang
            kill(survivor)
            response = client.post("/v1/images/generations", json=body)
            assert response.status_code == 502
            assert "downstream" in response.json()["error"]["message"]

            assert client.post("/admin/unregister/image", content=(a.base + "/").encode()).json()["url"] == a.base + "/"
            assert client.post("/admin/unregister/image", content=a.base.encode()).status_code == 404
    finally:
        for live in (proxy, a, b):
            if live.thread.is_alive():
                live.stop()


def test_periodic_health_checks_mark_a_dead_server(tmp_path: Path) -> None:
    downstream = LiveServer(server_config(tmp_path / "d", node_packs=("nodes.utility",))).start()
    proxy = LiveServer(server_config(tmp_path / "p", node_packs=("nodes.utility",))).start()
    try:
        registry_of(proxy.app).health_interval = 0.2
        with httpx.Client(base_url=proxy.base, timeout=20) as client:
            assert register(client, downstream.base).json()["healthy"] is True
            downstream.stop()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if client.get("/admin/servers").json()["servers"][0]["healthy"] is False:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the health check never noticed the dead server")
    finally:
        proxy.stop()


def test_registration_guard_and_admin_credential(tmp_path: Path) -> None:
    config = server_config(tmp_path, node_packs=("nodes.utility",), auth=AuthSettings(admin_token="admin-secret"))
    with LiveServer(config) as proxy, httpx.Client(base_url=proxy.base, timeout=20) as client:
        assert register(client, "http://127.0.0.1:9/").status_code == 401  # general auth is off, admin is not
        assert client.get("/admin/servers").status_code == 401
        assert client.get("/admin/servers", headers={"Authorization": "Bearer wrong"}).status_code == 401
        admin = {"Authorization": "Bearer admin-secret"}
        for url in ("http://169.254.169.254/latest/meta-data", "http://metadata.google.internal/", "gopher://x/"):
            refused = client.post("/admin/register/image", content=url.encode(), headers=admin)
            assert refused.status_code == 400 and "detail" in refused.json()
        assert client.get("/admin/servers", headers={"X-Admin-Token": "admin-secret"}).json()["image"] == []
        assert "admin-secret" not in client.get("/sdapi/v1/cmd-flags").text


def test_our_credentials_are_never_forwarded(tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []
    png = bodies.png_b64()

    async def txt2img(request: Request) -> JSONResponse:
        seen.append(dict(request.headers))
        return JSONResponse({"images": [png], "parameters": {}, "info": "{}"})

    async def progress(request: Request) -> JSONResponse:
        return JSONResponse({"progress": 0, "state": {"job_count": 0}})

    app = Starlette(routes=[Route("/sdapi/v1/txt2img", txt2img, methods=["POST"]), Route("/sdapi/v1/progress", progress)])
    port = free_port()
    fake = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=fake.run, daemon=True)
    thread.start()
    while not fake.started:
        time.sleep(0.01)
    auth = AuthSettings(mode="bearer", token="user-token", admin_token="admin-token")
    try:
        with LiveServer(server_config(tmp_path, node_packs=("nodes.utility",), auth=auth)) as proxy:
            headers = {"Authorization": "Bearer user-token", "X-Admin-Token": "admin-token"}
            with httpx.Client(base_url=proxy.base, timeout=20, headers=headers) as client:
                assert register(client, f"http://127.0.0.1:{port}").status_code == 200
                response = client.post("/v1/images/generations", json={"prompt": "x", "response_format": "b64_json"})
                assert response.status_code == 200, response.text
                assert response.json()["data"][0]["b64_json"] == png
    finally:
        fake.should_exit = True
        thread.join(10)
    assert seen and all("authorization" not in h and "x-admin-token" not in h for h in seen)
    assert all("user-token" not in repr(h) and "admin-token" not in repr(h) for h in seen)
