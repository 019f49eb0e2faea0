"""The /templates HTTP API over a real server on a loopback port (uvicorn + httpx)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from templates_server import SOLID_TEMPLATE, RunningServer, running_server

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sillytavern"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("http-templates")) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


def create(client: httpx.Client, name: str, **changes: object) -> httpx.Response:
    document = json.loads(json.dumps(SOLID_TEMPLATE)) | {"name": name} | changes
    response = client.post("/templates", json=document)
    assert response.status_code == 201, response.text
    return response


def wait_history(client: httpx.Client, prompt_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = client.get(f"/history/{prompt_id}").json()
        if entry:
            return entry[prompt_id]
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} did not finish")


def test_list_shows_bundled_templates(client: httpx.Client) -> None:
    templates = {t["name"]: t for t in client.get("/templates").json()["templates"]}
    assert templates["text-to-image"]["bundled"] is True
    assert "prompt" in templates["text-to-image"]["placeholders"]


def test_bundled_templates_are_read_only(client: httpx.Client) -> None:
    got = client.get("/templates/text-to-image")
    assert got.status_code == 200 and got.headers["etag"] == got.json()["etag"]
    put = client.put("/templates/text-to-image", json=got.json())
    assert put.status_code == 403 and "read-only" in put.json()["error"]["message"]
    assert client.delete("/templates/text-to-image").status_code == 403
    assert client.get("/templates/text-to-image", headers={"If-None-Match": got.headers["etag"]}).status_code == 304


def test_crud_with_etags_and_lost_update(client: httpx.Client) -> None:
    created = create(client, "crud-one")
    etag = created.headers["etag"]
    assert client.get("/templates/crud-one").headers["etag"] == etag

    first = created.json() | {"description": "first editor"}
    second = created.json() | {"description": "second editor"}
    ok = client.put("/templates/crud-one", json=first, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.headers["etag"] != etag
    lost = client.put("/templates/crud-one", json=second, headers={"If-Match": etag})
    assert lost.status_code == 412
    assert lost.headers["etag"] == ok.headers["etag"]
    assert client.get("/templates/crud-one").json()["description"] == "first editor"

    renamed = client.put("/templates/crud-one", json=first | {"name": "crud-two"}, headers={"If-Match": ok.headers["etag"]})
    assert renamed.status_code == 200 and renamed.json()["name"] == "crud-two"
    assert client.get("/templates/crud-one").status_code == 404
    assert client.delete("/templates/crud-two", headers={"If-Match": etag}).status_code == 412
    assert client.delete("/templates/crud-two", headers={"If-Match": renamed.headers["etag"]}).status_code == 204
    assert client.get("/templates/crud-two").status_code == 404
    assert client.post("/templates", json=SOLID_TEMPLATE | {"name": "text-to-image"}).status_code == 409


def test_put_creates_and_if_none_match_guards(client: httpx.Client) -> None:
    document = SOLID_TEMPLATE | {"name": "put-new"}
    assert client.put("/templates/put-new", json=document, headers={"If-None-Match": "*"}).status_code == 201
    assert client.put("/templates/put-new", json=document, headers={"If-None-Match": "*"}).status_code == 412


@pytest.mark.parametrize(
    "path",
    ["/templates/.hidden", "/templates/..%2F..%2Fetc%2Fpasswd", "/templates/%2e%2e", "/templates/a%5Cb", "/templates/x%00y"],
)
def test_traversal_names_are_refused(client: httpx.Client, server: RunningServer, path: str) -> None:
    assert client.get(path).status_code in (400, 404)
    assert client.put(path, json=SOLID_TEMPLATE).status_code in (400, 404, 405)
    leaked = [p for p in server.data_dir.rglob("*.json") if "templates" not in p.parts]
    assert leaked == []


def test_bad_bodies_get_clear_errors(client: httpx.Client) -> None:
    broken = client.post("/templates", content=b'{"name": "x", "workflow": {', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    ui = client.post("/templates", json={"name": "ui", "workflow": {"nodes": [], "links": []}})
    assert ui.status_code == 400 and "API Format" in ui.json()["error"]["message"]
    huge = client.post("/templates", json=SOLID_TEMPLATE | {"name": "huge", "description": "x" * (3 * 1024 * 1024)})
    assert huge.status_code == 413
    assert client.get("/templates/huge").status_code == 404


def test_import_uploaded_api_workflow(client: httpx.Client) -> None:
    if not FIXTURES.is_dir():
        pytest.skip("../shared fixtures absent")
    data = (FIXTURES / "Default_Comfy_Workflow.json").read_bytes()
    response = client.post("/templates", files={"file": ("Default_Comfy_Workflow.json", data, "application/json")},
                           data={"description": "from SillyTavern"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Default_Comfy_Workflow" and body["description"] == "from SillyTavern"
    assert body["workflow"] == json.loads(data)
    bare = client.post("/templates", params={"name": "bare import"}, content=data)
    assert bare.status_code == 201 and bare.json()["workflow"] == json.loads(data)
    nameless = client.post("/templates", content=data)
    assert nameless.status_code == 400 and "name is required" in nameless.json()["error"]["message"]


def test_placeholder_report(client: httpx.Client) -> None:
    create(client, "report-me", workflow=SOLID_TEMPLATE["workflow"] | {
        "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "run %prompt%"}}})
    report = client.get("/templates/report-me/placeholders").json()
    present = {p["name"]: p["present"] for p in report["predefined"]}
    assert present["width"] and present["steps"] and not present["seed"] and not present["prompt"]
    assert [c["name"] for c in report["custom"]] == ["red", "prefix"]
    assert [(f["name"], f["placement"], f["node_id"]) for f in report["flagged"]] == [("prompt", "embedded", "4")]
    unsaved = client.post("/templates/check", json={"workflow": {"1": {"class_type": "Nope", "inputs": {"a": "%x%"}}}})
    assert unsaved.status_code == 200 and "unknown node type" in unsaved.json()["flagged"][0]["message"]


def test_render_converts_values_and_validates(client: httpx.Client) -> None:
    create(client, "render-me")
    ok = client.post("/templates/render-me/render", json={"red": "0.25", "steps": "2", "prefix": 'a "b" $\' c'})
    assert ok.status_code == 200, ok.text
    inputs = ok.json()["prompt"]["1"]["inputs"]
    assert inputs["red"] == 0.25 and inputs["steps"] == 2 and inputs["width"] == 16
    assert ok.json()["prompt"]["3"]["inputs"]["filename_prefix"] == 'a "b" $\' c'
    wrapped = client.post("/templates/render-me/render", json={"values": {"red": 1}})
    assert wrapped.json()["prompt"]["1"]["inputs"]["red"] == 1.0

    bad = client.post("/templates/render-me/render", json={"red": "bright", "steps": "many"})
    assert bad.status_code == 400
    errors = bad.json()["node_errors"]["1"]
    assert errors["class_type"] == "TemplateTestSolid"
    assert {e["extra_info"]["placeholder"] for e in errors["errors"]} == {"red", "steps"}

    out_of_range = client.post("/templates/render-me/render", json={"red": "5"})  # engine validation: max 1.0
    assert out_of_range.status_code == 400
    assert out_of_range.json()["node_errors"]["1"]["errors"][0]["type"] == "value_bigger_than_max"

    not_json = client.post("/templates/render-me/render", content=b"red=1")
    assert not_json.status_code == 400


def test_render_reports_unknown_placeholders_and_node_types(client: httpx.Client) -> None:
    workflow = {"1": {"class_type": "Missing", "inputs": {"x": "%mystery%"}}}
    create(client, "broken-one", workflow=workflow, defaults={})
    unknown = client.post("/templates/broken-one/render", json={})
    assert unknown.status_code == 400
    error = unknown.json()["node_errors"]["1"]["errors"][0]
    assert error["type"] == "unknown_placeholder" and error["extra_info"]["placeholder"] == "mystery"
    invalid = client.post("/templates/broken-one/render", json={"mystery": "1"})
    assert invalid.status_code == 400 and invalid.json()["error"]["type"] != "unknown_placeholder"


def test_run_queues_and_produces_an_image(client: httpx.Client) -> None:
    create(client, "run-me")
    response = client.post("/templates/run-me/run", json={"values": {"red": "0.2", "width": "24"}, "client_id": "tester"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["prompt_id"], str) and "number" in body and body["node_errors"] == {}
    entry = wait_history(client, body["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    (image,) = entry["outputs"]["3"]["images"]
    png = client.get("/view", params=image)
    assert png.status_code == 200
    with Image.open(io.BytesIO(png.content)) as picture:
        assert picture.size == (24, 16)
        red, _, blue = picture.convert("RGB").getpixel((0, 0))
        assert abs(red - round(255 * 0.8)) <= 1 and abs(blue - round(255 * 0.75)) <= 1  # inverted
    rejected = client.post("/templates/run-me/run", json={"width": "wide"})
    assert rejected.status_code == 400 and "width" in json.dumps(rejected.json())


def test_avatar_values_are_validated_and_not_echoed(client: httpx.Client) -> None:
    create(client, "avatar", workflow={
        "1": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": "%char_avatar%"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "avatar"}}}, defaults={})
    bad = client.post("/templates/avatar/render", json={"char_avatar": base64.b64encode(b"not an image").decode()})
    assert bad.status_code == 400
    assert bad.json()["node_errors"]["1"]["errors"][0]["extra_info"]["placeholder"] == "char_avatar"
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    good = client.post("/templates/avatar/render", json={"char_avatar": base64.b64encode(buffer.getvalue()).decode()})
    assert good.status_code == 200, good.text
    assert good.json()["values"]["char_avatar"].startswith("<base64 image")


def test_page_is_served(client: httpx.Client) -> None:
    page = client.get("/templates-ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "app.js" in page.text
    assert client.get("/templates-ui/app.js").status_code == 200
    assert client.get("/templates-ui/../pyproject.toml").status_code == 404
    assert client.get("/templates-ui/secret.txt").status_code == 404


def test_auth_gate_covers_templates(tmp_path: Path) -> None:
    with running_server(tmp_path, mode="bearer", token="s3cret") as secured:
        with httpx.Client(base_url=secured.base_url) as http:
            assert http.get("/templates").status_code == 401
            assert http.post("/templates/text-to-image/run", json={}).status_code == 401
            authorised = http.get("/templates", headers={"Authorization": "Bearer s3cret"})
            assert authorised.status_code == 200
            assert "s3cret" not in authorised.text


@pytest.mark.slow
def test_bundled_text_to_image_runs_on_the_micro_model(tmp_path: Path) -> None:
    """The main job's default image workflow, end to end: bundled template → queue → 64×64 PNG."""
    from graphengine.models.checkpoint_maker import make_checkpoint

    checkpoints = tmp_path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    make_checkpoint(checkpoints / "graphengine-default.safetensors", "micro", dtype="fp32")
    with running_server(tmp_path, builtin_packs=True) as full, httpx.Client(base_url=full.base_url, timeout=60) as http:
        response = http.post("/templates/text-to-image/run", json={"prompt": "a red 'apple' $& \"quoted\"", "seed": 7})
        assert response.status_code == 200, response.text
        assert response.json()["values"]["seed"] == 7
        entry = wait_history(http, response.json()["prompt_id"], timeout=120)
        assert entry["status"]["status_str"] == "success", entry["status"]
        assert entry["prompt"][2]["6"]["inputs"]["text"] == "a red 'apple' $& \"quoted\""
        (image,) = [img for output in entry["outputs"].values() for img in output.get("images", [])]
        with Image.open(io.BytesIO(http.get("/view", params=image).content)) as picture:
            assert picture.size == (64, 64)
