"""ComfyUI's routes over a real socket: shapes, status codes, /api aliases, bad input, OpenAPI."""

from __future__ import annotations

import io
import json
import time
import uuid

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute

from tests.http_harness import LiveServer, server_config, text_prompt, wait_history


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    with LiveServer(server_config(tmp_path_factory.mktemp("routes"))) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> httpx.Client:
    with server.client() as http:
        yield http


def wait_running(client: httpx.Client, prompt_id: str) -> None:
    for _ in range(500):
        if [item[1] for item in client.get("/queue").json()["queue_running"]] == [prompt_id]:
            return
        time.sleep(0.01)
    raise TimeoutError(prompt_id)


def _png(size: tuple[int, int] = (4, 3), color: tuple[int, ...] = (10, 20, 30, 255)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_prompt_roundtrip_and_history_entry_shape(client: httpx.Client, prefix: str) -> None:
    text = f"shape-{uuid.uuid4()}"
    answer = client.post(f"{prefix}/prompt", json={"prompt": text_prompt(text), "extra_data": {"x": 1}})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"prompt_id", "number", "node_errors"} and body["node_errors"] == {}
    assert isinstance(body["number"], int)
    entry = wait_history(client, body["prompt_id"])
    number, pid, prompt, extra, outputs = entry["prompt"]
    assert (number, pid, outputs) == (body["number"], body["prompt_id"], ["1"])
    assert prompt["1"]["inputs"]["text"] == text and extra["x"] == 1
    assert entry["outputs"] == {"1": {"text": [text]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert all(isinstance(m[1]["timestamp"], int) for m in entry["status"]["messages"])
    assert client.get(f"{prefix}/prompt").json() == {"exec_info": {"queue_remaining": 0}}


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "application/octet-stream", None])
def test_prompt_body_is_json_whatever_the_content_type(client: httpx.Client, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = '{\n                "prompt": ' + json.dumps(text_prompt(f"ct-{uuid.uuid4()}")) + "\n            }"
    response = client.post("/prompt", content=body.encode(), headers=headers)
    assert response.status_code == 200, response.text
    wait_history(client, response.json()["prompt_id"])


def test_validation_error_is_comfyui_400_shape(client: httpx.Client) -> None:
    response = client.post("/prompt", json={"prompt": {"1": {"class_type": "ServerText", "inputs": {"steps": "many"}}}})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["1"]["class_type"] == "ServerText"
    unknown = client.post("/prompt", json={"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}).json()
    assert unknown["error"]["type"] in ("invalid_prompt", "missing_node_type")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (b'"prompt"', "invalid_request"),
        (b"{}", "no_prompt"),
        (b'{"prompt": [1, 2]}', "invalid_prompt"),
        (b'{"prompt": {}, "client_id": "bad id\\n"}', "invalid_client_id"),
        (b'{"prompt": {}, "extra_data": 5}', "invalid_request"),
        (b'{"prompt": {}, "number": "first"}', "invalid_request"),
        (b'{"prompt": {"1": {"class_type": "ServerText", "inputs": {}}}, "prompt_id": "../../x"}', "invalid_prompt_id"),
    ],
)
def test_bad_prompt_bodies_get_clear_400_json(client: httpx.Client, body: bytes, kind: str) -> None:
    response = client.post("/prompt", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"]["type"] == kind and payload["error"]["message"]
    assert "Traceback" not in response.text


def test_duplicate_prompt_id_is_refused(client: httpx.Client) -> None:
    pid = str(uuid.uuid4())
    assert client.post("/prompt", json={"prompt": text_prompt(f"dup-{pid}"), "prompt_id": pid}).json()["prompt_id"] == pid
    again = client.post("/prompt", json={"prompt": text_prompt("dup"), "prompt_id": pid})
    assert again.status_code == 400 and again.json()["error"]["type"] == "invalid_prompt_id"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/queue", b"nope"),
        ("POST", "/queue", b'{"delete": 5}'),
        ("POST", "/queue", b"[]"),
        ("POST", "/history", b"{bad"),
        ("POST", "/history", b'{"clear": "maybe"}'),
        ("POST", "/free", b"{"),
        ("POST", "/settings", b"[1]"),
        ("GET", "/history?max_items=lots", None),
        ("GET", "/history?offset=x", None),
        ("GET", "/api/jobs?status=weird", None),
        ("GET", "/api/jobs?limit=-1", None),
        ("POST", "/api/jobs/cancel", b'{"job_ids": "x"}'),
        ("GET", "/internal/files/secrets", None),
        ("GET", "/view?filename=a.png&type=secret", None),
        ("GET", "/userdata", None),
        ("POST", "/upload/image", b"not multipart"),
    ],
)
def test_bad_input_on_other_routes_is_4xx_json(client: httpx.Client, method: str, path: str, body: bytes | None) -> None:
    response = client.request(method, path, content=body)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
    assert "error" in response.json()
    assert client.get("/prompt").status_code == 200  # still serving


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    missing = client.get("/definitely/not/here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    wrong = client.delete("/prompt")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "method_not_allowed"
    assert client.put("/api/history").status_code == 405


def test_empty_200_routes(client: httpx.Client) -> None:
    for path, body in [("/queue", {"clear": False}), ("/interrupt", None), ("/free", {"unload_models": False}),
                       ("/history", {"delete": ["nothing"]})]:
        response = client.post(path, json=body) if body is not None else client.post(path)
        assert response.status_code == 200 and response.content == b"", path
    assert client.post("/interrupt", content=b"not json at all").status_code == 200


def test_queue_priority_delete_clear_over_http(server: LiveServer, client: httpx.Client) -> None:
    blocker = client.post("/prompt", json={"prompt": text_prompt(f"block-{uuid.uuid4()}", steps=300, delay=0.01)}).json()
    wait_running(client, blocker["prompt_id"])
    try:
        ids = {}
        for name, extra in [("a", {}), ("b", {}), ("front", {"front": True}), ("explicit", {"number": -1000.5})]:
            ids[name] = client.post("/prompt", json={"prompt": text_prompt(f"{name}-{uuid.uuid4()}"), **extra}).json()
        queue = client.get("/queue").json()
        assert [item[1] for item in queue["queue_running"]] == [blocker["prompt_id"]]
        pending = sorted(queue["queue_pending"], key=lambda item: item[0])
        assert [item[1] for item in pending] == [ids[n]["prompt_id"] for n in ("explicit", "front", "a", "b")]
        assert all(len(item) == 5 for item in pending)
        assert ids["explicit"]["number"] == -1000.5 and ids["front"]["number"] < 0
        assert client.get("/prompt").json()["exec_info"]["queue_remaining"] == 5
        client.post("/queue", json={"delete": [ids["a"]["prompt_id"], blocker["prompt_id"]]})
        remaining = [item[1] for item in client.get("/queue").json()["queue_pending"]]
        assert ids["a"]["prompt_id"] not in remaining and len(remaining) == 3
        assert client.get("/queue").json()["queue_running"][0][1] == blocker["prompt_id"]  # delete skips running
        # comfy-catapult sends these form-encoded
        client.post("/queue", content=f"delete={ids['b']['prompt_id']}&clear=false".encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"})
        assert len(client.get("/queue").json()["queue_pending"]) == 2
        client.post("/queue", json={"clear": True})
        assert client.get("/queue").json()["queue_pending"] == []
        for name in ("a", "b", "front", "explicit"):
            assert client.get(f"/history/{ids[name]['prompt_id']}").json() == {}
    finally:
        client.post("/interrupt")
    wait_history(client, blocker["prompt_id"])


def test_history_paging_and_delete(client: httpx.Client) -> None:
    ids = [client.post("/prompt", json={"prompt": text_prompt(f"page-{n}-{uuid.uuid4()}")}).json()["prompt_id"] for n in range(3)]
    for pid in ids:
        wait_history(client, pid)
    everything = list(client.get("/history").json())
    assert everything[-3:] == ids
    assert list(client.get("/history?max_items=2").json()) == ids[1:]
    total = len(everything)
    assert list(client.get(f"/history?max_items=1&offset={total - 3}").json()) == ids[:1]
    client.post("/history", json={"delete": [ids[0]]})
    assert client.get(f"/history/{ids[0]}").json() == {}
    assert ids[1] in client.get("/history").json()


def test_object_info_routes(client: httpx.Client) -> None:
    info = client.get("/object_info").json()
    entry = info["ServerText"]
    for key in ("input", "input_order", "output", "output_is_list", "output_name", "name", "display_name",
                "description", "python_module", "category", "output_node"):
        assert key in entry
    assert client.get("/object_info/ServerText").json() == {"ServerText": entry}
    assert client.get("/api/object_info/Unknown").json() == {}
    assert "LoadImage" in info


def test_info_routes(client: httpx.Client, server: LiveServer) -> None:
    stats = client.get("/system_stats").json()
    assert {"os", "ram_total", "ram_free", "python_version", "comfyui_version"} <= set(stats["system"])
    assert stats["devices"] and {"name", "type", "index", "vram_total", "vram_free"} <= set(stats["devices"][0])
    assert client.get("/features").json() == {"supports_preview_metadata": True,
                                              "max_upload_size": server.config.max_upload_bytes}
    assert client.get("/embeddings").json() == []
    assert client.get("/extensions").json() == []
    models = client.get("/models").json()
    assert isinstance(models, list)
    assert client.get("/models/not-a-folder").status_code == 404
    assert client.get("/view_metadata/checkpoints?filename=none.safetensors").status_code == 404


def test_upload_view_and_internal_files(client: httpx.Client) -> None:
    png = _png()
    first = client.post("/upload/image", files={"image": ("pic.png", png, "image/png")},
                        data={"subfolder": "sub/dir", "type": "input"}).json()
    assert first == {"name": "pic.png", "subfolder": "sub/dir", "type": "input"}
    same = client.post("/upload/image", files={"image": ("pic.png", png, "image/png")}, data={"subfolder": "sub/dir"}).json()
    assert same["name"] == "pic.png"  # identical content reuses the name
    other = client.post("/upload/image", files={"image": ("pic.png", _png(color=(1, 2, 3, 4)), "image/png")},
                        data={"subfolder": "sub/dir"}).json()
    assert other["name"] == "pic (1).png"
    overwritten = client.post("/upload/image", files={"image": ("pic.png", _png(color=(9, 9, 9, 9)), "image/png")},
                              data={"subfolder": "sub/dir", "overwrite": "true"}).json()
    assert overwritten["name"] == "pic.png"
    view = client.get("/view", params={"filename": "pic.png", "subfolder": "sub/dir", "type": "input"})
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert view.headers["x-content-type-options"] == "nosniff"
    assert "pic.png" in view.headers["content-disposition"]
    annotated = client.get("/view", params={"filename": "pic.png [input]", "subfolder": "sub/dir"})
    assert annotated.content == view.content
    webp = client.get("/view", params={"filename": "pic.png", "subfolder": "sub/dir", "type": "input", "preview": "webp;50"})
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"
    alpha = client.get("/view", params={"filename": "pic.png", "subfolder": "sub/dir", "type": "input", "channel": "a"})
    from PIL import Image

    assert Image.open(io.BytesIO(alpha.content)).getpixel((0, 0)) == (0, 0, 0, 9)
    top = client.post("/upload/image", files={"image": ("top.png", png, "image/png")}).json()
    assert top["subfolder"] == "" and "top.png" in client.get("/internal/files/input").json()
    assert client.get("/api/internal/files/input").status_code == 404  # /internal is not aliased
    mask = client.post("/upload/mask", files={"image": ("mask.png", _png(color=(0, 0, 0, 77)), "image/png")},
                       data={"original_ref": json.dumps({"filename": "top.png", "type": "input"})})
    assert mask.status_code == 200, mask.text
    merged = client.get("/view", params={"filename": mask.json()["name"], "type": "input"})
    assert Image.open(io.BytesIO(merged.content)).getpixel((0, 0)) == (10, 20, 30, 77)
    missing = client.post("/upload/image", data={"type": "input"}, files={"other": ("x.png", png, "image/png")})
    assert missing.status_code == 400


def test_active_content_is_served_as_attachment(client: httpx.Client) -> None:
    for name, data in [("page.html", b"<script>alert(1)</script>"), ("vector.svg", b"<svg onload='x'/>")]:
        assert client.post("/upload/image", files={"image": (name, data, "text/html")}).status_code == 200
        response = client.get("/view", params={"filename": name, "type": "input"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment")
        assert response.headers["x-content-type-options"] == "nosniff"


def test_settings_users_and_userdata(client: httpx.Client) -> None:
    assert client.post("/settings", json={"Comfy.A": 1, "Comfy.B": "x"}).status_code == 200
    assert client.post("/settings/Comfy.C", json=[1, 2]).content == b""
    assert client.get("/settings").json() == {"Comfy.A": 1, "Comfy.B": "x", "Comfy.C": [1, 2]}
    assert client.get("/settings/Comfy.C").json() == [1, 2]
    assert client.get("/settings/missing").json() is None
    assert client.get("/users").json()["storage"] == "server"
    saved = client.post("/userdata/workflows%2Fmy%20flow.json", content=b'{"a": 1}')
    assert saved.status_code == 200 and saved.json() == "workflows/my flow.json"
    assert client.post("/userdata/workflows%2Fmy%20flow.json?overwrite=false", content=b"{}").status_code == 409
    assert client.get("/userdata/workflows%2Fmy%20flow.json").json() == {"a": 1}
    assert client.get("/userdata", params={"dir": "workflows"}).json() == ["my flow.json"]
    full = client.get("/userdata", params={"dir": "workflows", "full_info": "true"}).json()
    assert full[0]["path"] == "my flow.json" and full[0]["size"] == 8
    listing = client.get("/v2/userdata", params={"path": "workflows"}).json()
    assert listing[0]["name"] == "my flow.json" and listing[0]["type"] == "file"
    moved = client.post("/userdata/workflows%2Fmy%20flow.json/move/workflows%2Frenamed.json")
    assert moved.json() == "workflows/renamed.json"
    assert client.delete("/userdata/workflows%2Frenamed.json").status_code == 204
    assert client.get("/userdata/workflows%2Frenamed.json").status_code == 404


def test_jobs_api(client: httpx.Client) -> None:
    pid = client.post("/prompt", json={"prompt": text_prompt(f"job-{uuid.uuid4()}")}).json()["prompt_id"]
    wait_history(client, pid)
    jobs = client.get("/api/jobs", params={"status": "completed", "sort_order": "desc", "limit": 5}).json()
    assert jobs["pagination"]["limit"] == 5 and any(job["id"] == pid for job in jobs["jobs"])
    job = client.get(f"/api/jobs/{pid}").json()
    assert job["status"] == "completed" and job["outputs"] == {"1": {"text": [job["workflow"]["prompt"]["1"]["inputs"]["text"]]}}
    assert job["execution_status"]["status_str"] == "success"
    assert client.get("/api/jobs/unknown").status_code == 404
    assert client.post(f"/api/jobs/{pid}/cancel").json() == {"cancelled": False}
    failed = client.post("/prompt", json={"prompt": {"1": {"class_type": "ServerFail", "inputs": {"message": "x"}}}}).json()["prompt_id"]
    wait_history(client, failed)
    assert client.get(f"/api/jobs/{failed}").json()["status"] == "failed"


def test_openapi_describes_every_route_and_docs_page(server: LiveServer, client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for route in server.app.routes:
        if isinstance(route, (Route, WebSocketRoute)):
            assert route.path in spec["paths"], route.path
            if isinstance(route, Route):
                for method in route.methods or ():
                    if method != "HEAD":
                        assert method.lower() in spec["paths"][route.path], (method, route.path)
    assert spec["paths"]["/prompt"]["post"]["summary"].startswith("Queue an API-format workflow")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text and "SwaggerUIBundle" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text  # no CDN: everything is served here
    bundle = client.get("/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    assert client.get("/docs/swagger-ui.css").status_code == 200
    assert client.get("/docs/..%2Fopenapi.py").status_code == 404


def test_identical_repost_is_cached_until_free_memory(client: httpx.Client) -> None:
    prompt = text_prompt(f"free-{uuid.uuid4()}")

    def cached_nodes() -> list[str]:
        pid = client.post("/prompt", json={"prompt": prompt}).json()["prompt_id"]
        messages = dict((kind, data) for kind, data in wait_history(client, pid)["status"]["messages"])
        return messages["execution_cached"]["nodes"]

    assert cached_nodes() == []
    assert cached_nodes() == ["1"]  # identical re-post: answered from the cache
    assert client.post("/free", json={"unload_models": True, "free_memory": True}).status_code == 200
    assert cached_nodes() == []  # the caches were dropped
