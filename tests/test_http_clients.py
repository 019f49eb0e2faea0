"""Real client request sequences against a server running the built-in packs and a micro model:
SillyTavern (text/plain POST, polling the full /history), Talemate (upload to a subfolder, LoadImage
``sub/name.png``, polling /history/{id}), and websocket clients waiting for ``executing`` node null."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest

from tests.http_harness import LiveServer, connect, finished, receive_json_until, server_config

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ST_WORKFLOW = SHARED / "fixtures" / "sillytavern" / "Default_Comfy_Workflow.json"
CHECKPOINT = "micro.safetensors"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    from graphengine.models.checkpoint_maker import make_checkpoint

    root = tmp_path_factory.mktemp("clients")
    (root / "models" / "checkpoints").mkdir(parents=True)
    make_checkpoint(root / "models" / "checkpoints" / CHECKPOINT, "micro")
    with LiveServer(server_config(root, node_packs=None)) as live:  # the built-in packs
        yield live


def _sillytavern_body(seed: int, prompt: str = "a red fox") -> str:
    from graphengine.templates.sillytavern import SillyTavernSettings, render_sillytavern, sillytavern_prompt_body

    settings = SillyTavernSettings(prompt=prompt, negative_prompt="blurry", model=CHECKPOINT, sampler="euler",
                                   scheduler="normal", steps=2, scale=7, width=64, height=64, seed=seed)
    return sillytavern_prompt_body(render_sillytavern(ST_WORKFLOW.read_text(), settings))


def _poll_full_history(client: httpx.Client, prompt_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/history")  # SillyTavern: the whole history, every 100 ms
        assert response.status_code == 200
        history = response.json()
        if prompt_id in history:
            return history[prompt_id]
        time.sleep(0.1)
    raise TimeoutError(prompt_id)


def _first_image(outputs: dict) -> dict:
    lowest = sorted(outputs, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))[0]
    return outputs[lowest]["images"][0]


@pytest.mark.skipif(not ST_WORKFLOW.exists(), reason="shared SillyTavern fixtures not available")
def test_sillytavern_sequence(server: LiveServer) -> None:
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    with server.client() as client:
        assert client.get("/system_stats").status_code == 200  # ping
        info = client.get("/object_info").json()
        assert CHECKPOINT in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        assert "euler" in info["KSampler"]["input"]["required"]["sampler_name"][0]
        assert isinstance(info["UNETLoader"]["input"]["required"]["unet_name"][0], list)
        accepted = client.post("/prompt", content=_sillytavern_body(seed=9007199254740991).encode(), headers=headers)
        assert accepted.status_code == 200, accepted.text
        item = _poll_full_history(client, accepted.json()["prompt_id"])
        assert item["status"]["status_str"] == "success", item["status"]
        image = _first_image(item["outputs"])
        assert image["filename"].startswith("SillyTavern_") and image["type"] == "output"
        # SillyTavern builds the query without URL-encoding
        raw = client.get(f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}")
        assert raw.status_code == 200 and raw.content[:8] == b"\x89PNG\r\n\x1a\n"
        from PIL import Image

        png = Image.open(io.BytesIO(raw.content))
        assert png.size == (64, 64) and json.loads(png.text["prompt"])["3"]["class_type"] == "KSampler"
        # an undefined setting makes SillyTavern send invalid JSON: a clean 400
        broken = client.post("/prompt", content=b'{"prompt": {"4": {"inputs": {"ckpt_name": undefined}}}}', headers=headers)
        assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_json"
        # the interrupt it fires when the browser goes away carries a junk Basic header
        assert client.post("/interrupt", headers={"Authorization": "Basic dW5kZWZpbmVk"}).status_code == 200


def _png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_talemate_sequence(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/system_stats", timeout=2).status_code == 200
        name = f"talemate_{uuid.uuid4().hex[:10]}.png"
        upload = client.post("/upload/image", files={"image": (name, _png_bytes(), "image/png")},
                             data={"type": "input", "subfolder": "talemate", "overwrite": "true"})
        assert upload.status_code == 200
        ref = upload.json()
        assert ref == {"name": name, "subfolder": "talemate", "type": "input"}
        graph = {
            "10": {"class_type": "LoadImage", "inputs": {"image": f"{ref['subfolder']}/{ref['name']}"},
                   "_meta": {"title": "Talemate Reference 1"}},
            "11": {"class_type": "LoadImage", "inputs": {"image": ""}, "_meta": {"title": "Talemate Reference 2"}},
            "20": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "ComfyUI"},
                   "_meta": {"title": "Save"}},
        }
        accepted = client.post("/prompt", json={"prompt": graph})
        assert accepted.status_code == 200, accepted.text  # the orphan LoadImage "" is not validated
        prompt_id = accepted.json()["prompt_id"]
        seen_empty = False
        deadline = time.monotonic() + 60
        while True:
            history = client.get(f"/history/{prompt_id}").json()
            if history:
                break
            seen_empty = True
            assert time.monotonic() < deadline
            time.sleep(0.05)
        outputs = history[prompt_id]["outputs"]
        image = list(outputs.values())[-1]["images"][0]
        fetched = client.get("/view?" + urllib.parse.urlencode(image))
        from PIL import Image

        assert Image.open(io.BytesIO(fetched.content)).size == (32, 24)
        assert seen_empty or history[prompt_id]["status"]["completed"]


@pytest.mark.skipif(not ST_WORKFLOW.exists(), reason="shared SillyTavern fixtures not available")
def test_websocket_client_waits_for_executing_null(server: LiveServer) -> None:
    client_id = str(uuid.uuid4())
    prompt = json.loads(_sillytavern_body(seed=1234, prompt="a blue bird"))["prompt"]
    own_id = str(uuid.uuid4())

    async def scenario() -> tuple[list[dict], dict]:
        async with connect(server.ws_url(client_id)) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "status" and hello["data"]["sid"] == client_id
            body = json.dumps({"prompt": prompt, "client_id": client_id, "prompt_id": own_id,
                               "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-1"}}}}).encode()

            def post() -> httpx.Response:
                with server.client() as http:  # comfy-catapult sends raw bytes as octet-stream
                    return http.post("/prompt", content=body, headers={"Content-Type": "application/octet-stream"})

            answer = await asyncio.to_thread(post)
            assert answer.status_code == 200 and answer.json()["prompt_id"] == own_id
            messages = await receive_json_until(ws, finished(own_id), timeout=120)
            with server.client() as http:
                entry = http.get(f"/history/{own_id}").json()[own_id]
            return messages, entry

    messages, entry = asyncio.run(scenario())
    for message in messages:
        if message["type"] not in ("status",):
            assert message["data"]["prompt_id"] == own_id  # comfy-cli drops messages without it
    types = [m["type"] for m in messages]
    assert "execution_cached" in types and "execution_success" in types
    ran = {m["data"]["node"] for m in messages if m["type"] == "executing" and m["data"]["node"]}
    cached = set(next(m for m in messages if m["type"] == "execution_cached")["data"]["nodes"])
    assert ran | cached == {"3", "4", "5", "6", "7", "8", "9"}
    steps = [m["data"] for m in messages if m["type"] == "progress"]
    assert [s["value"] for s in steps if s["node"] == "3"] == [1, 2]
    assert entry["outputs"]["9"]["images"][0]["filename"].startswith("SillyTavern_")
    assert entry["prompt"][3]["client_id"] == client_id


def test_client_that_connects_after_posting(server: LiveServer) -> None:
    with server.client() as client:
        graph = {"20": {"class_type": "LoadImage", "inputs": {"image": "talemate"}}}
        assert client.post("/prompt", json={"prompt": graph}).status_code == 400  # no output node
        stats = client.get("/embeddings")
        assert stats.status_code == 200 and isinstance(stats.json(), list)

    async def scenario() -> dict:
        async with connect(server.ws_url(str(uuid.uuid4()))) as ws:
            return json.loads(await ws.recv())

    hello = asyncio.run(scenario())
    assert "queue_remaining" in hello["data"]["status"]["exec_info"]


def test_model_routes_see_the_checkpoint(server: LiveServer) -> None:
    with server.client() as client:
        assert "checkpoints" in client.get("/models").json()
        assert CHECKPOINT in client.get("/api/models/checkpoints").json()
        metadata = client.get("/view_metadata/checkpoints", params={"filename": CHECKPOINT})
        assert metadata.status_code == 200 and isinstance(metadata.json(), dict) and metadata.json()
        assert client.get("/view_metadata/checkpoints", params={"filename": "../" + CHECKPOINT}).status_code in (400, 403, 404)


def test_save_prefixes_cannot_leave_the_output_folder(server: LiveServer, tmp_path: Path) -> None:
    output_root = server.services.paths.output_dir
    outside_before = {p for p in output_root.parent.parent.rglob("*") if not p.is_relative_to(output_root)}
    with server.client() as client:
        name = client.post("/upload/image", files={"image": ("src.png", _png_bytes(), "image/png")}).json()["name"]
        for prefix in ("../escaped", "../../escaped", "/tmp/escaped", "..\\escaped", "sub/../../escaped", "%2e%2e/escaped"):
            graph = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                     "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}
            response = client.post("/prompt", json={"prompt": graph})
            if response.status_code == 200:  # refused at run time instead of validation
                pid = response.json()["prompt_id"]
                deadline = time.monotonic() + 60
                while not (entry := client.get(f"/history/{pid}").json()):
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                assert entry[pid]["status"]["status_str"] == "error", prefix
            else:
                assert response.status_code == 400
    outside_after = {p for p in output_root.parent.parent.rglob("*") if not p.is_relative_to(output_root)}
    assert not [p for p in outside_after - outside_before if "escaped" in p.name]
    assert not list(Path("/tmp").glob("escaped_*"))
