"""``/sdapi/v1`` end to end: real clients' bodies against a real server running the micro model,
answers read the way each client reads them; bad bodies; the auth matrix."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphengine.http.config import AuthSettings
from tests import a1111_bodies as bodies
from tests.a1111_server import CHECKPOINT, LORA, decode_png, history_count, info_of, make_models, pipeline_server, pixels
from tests.http_harness import LiveServer, server_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_models(tmp_path_factory.mktemp("sdapi_models") / "models", lora=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LiveServer]:
    with pipeline_server(tmp_path_factory.mktemp("sdapi"), models_dir, preview_method="latent2rgb") as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as c:
        yield c


def test_sillytavern_auto_flow(client: httpx.Client) -> None:
    # ST always sends a Basic header (empty auth field → "Basic " with nothing after it).
    headers = {"Authorization": "Basic"}  # "Basic " with nothing after it; the trailing space is trimmed on the wire
    options = client.get("/sdapi/v1/options", headers=headers).json()
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models", headers=headers).json()]
    assert options["sd_model_checkpoint"] in titles and "forge_preset" not in options
    # webuiapi's util_get_current_model: the sd-models entry whose sha256 == options.sd_checkpoint_hash
    models = client.get("/sdapi/v1/sd-models").json()
    assert [m["title"] for m in models if m["sha256"] == options["sd_checkpoint_hash"]] == [options["sd_model_checkpoint"]]
    assert "DPM++ 2M" in [s["name"] for s in client.get("/sdapi/v1/samplers", headers=headers).json()]
    assert "karras" in [s["name"] for s in client.get("/sdapi/v1/schedulers", headers=headers).json()]
    before = history_count(client)
    response = client.post("/sdapi/v1/txt2img", json=bodies.sillytavern_auto(seed=77), headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    image = decode_png(body["images"][0])  # ST: images[0], labelled PNG
    assert image.size == (64, 64)
    assert info_of(body)["all_seeds"] == [77]
    assert "url" not in body["parameters"] and "auth" not in body["parameters"]
    assert "st-secret-password" not in response.text
    # the generation went through the same queue: it is in /history, with our graph
    history = client.get("/history").json()
    assert len(history) == before + 1
    entry = list(history.values())[-1]
    assert entry["status"]["status_str"] == "success"
    classes = {node["class_type"] for node in entry["prompt"][2].values()}
    assert {"CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage"} <= classes
    assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_sillytavern_vlad_set_model_then_poll_progress(client: httpx.Client) -> None:
    headers = {"Authorization": "Basic " + base64.b64encode(b"user:pass").decode()}  # ignored: auth is off
    title = client.get("/sdapi/v1/sd-models", headers=headers).json()[0]["title"]
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": title}, headers=headers).status_code == 200
    for _ in range(10):  # ST's set-model wait
        progress = client.get("/sdapi/v1/progress", headers=headers).json()
        if progress["progress"] == 0.0 and progress["state"]["job_count"] == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail("progress never settled")
    body = client.post("/sdapi/v1/txt2img", json=bodies.sillytavern_vlad(), headers=headers).json()
    info = info_of(body)
    assert len(body["images"]) == 1 and len(info["all_seeds"]) == 1 and 0 <= info["all_seeds"][0] < 2**32
    assert info["sampler_name"] == "DPM++ 2M" and info["scheduler"] == "Normal"


@pytest.mark.parametrize("scheduler", ["Karras", "SGM Uniform", "polyPolyexponentialexponential"])
def test_talemate_a1111_labels_and_its_typo(client: httpx.Client, scheduler: str) -> None:
    response = client.post("/sdapi/v1/txt2img", json=bodies.talemate_a1111(scheduler=scheduler))
    assert response.status_code == 200, response.text
    image = response.json()["images"][0]
    decode_png(image.split(",", 1)[1] if image.startswith("data:") else image)  # Talemate strips a prefix


def test_talemate_sdnext_txt2img_and_img2img_with_model(client: httpx.Client) -> None:
    title = client.get("/sdapi/v1/sd-models").json()[0]["title"]
    body = client.post("/sdapi/v1/txt2img", json=bodies.talemate_sdnext_txt2img(model=title)).json()
    assert info_of(body)["sd_model_name"] == "micro"
    reference = bodies.png_b64(96, 80, color=(10, 200, 30))
    response = client.post("/sdapi/v1/img2img", json=bodies.talemate_sdnext_img2img(image=reference, model=title))
    assert response.status_code == 200, response.text
    result = response.json()
    assert decode_png(result["images"][0]).size == (64, 64)
    assert info_of(result)["denoising_strength"] == 0.75
    assert result["parameters"]["init_images"] is None  # never echoed back unless asked


def test_webuiapi_batches_iterations_and_per_image_seeds(client: httpx.Client) -> None:
    body = client.post("/sdapi/v1/txt2img", json=bodies.webuiapi_txt2img(batch_size=2, n_iter=2, seed=1000)).json()
    info = info_of(body)
    assert info["all_seeds"] == [1000, 1001, 1002, 1003] and len(body["images"]) == 4
    assert len(info["infotexts"]) == 4 and "Seed: 1002" in info["infotexts"][2]
    # every image is reproducible alone from the seed reported for it
    alone = client.post("/sdapi/v1/txt2img", json=bodies.webuiapi_txt2img(seed=1003)).json()
    assert pixels(alone["images"][0]) == pixels(body["images"][3])
    assert pixels(body["images"][0]) != pixels(body["images"][1])


def test_webuiapi_img2img_inpaint_with_data_urls_and_png_info(client: httpx.Client) -> None:
    from PIL import Image

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    import io

    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    mask_b64 = base64.b64encode(buffer.getvalue()).decode()
    body = bodies.webuiapi_img2img(image_b64=bodies.png_b64(color=(30, 60, 220)), mask_b64=mask_b64) | {"mask_blur": 2}
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    image = response.json()["images"][0]
    result = decode_png(image).convert("RGB")
    # outside the (blurred) mask the source is kept exactly, as A1111 overlays it; inside it is repainted
    assert result.getpixel((2, 2)) == (30, 60, 220) and result.getpixel((60, 61)) == (30, 60, 220)
    assert result.getpixel((32, 32)) != (30, 60, 220)
    info = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + image}).json()
    assert "ETN_LoadMaskBase64" in info["items"]["prompt"]  # our graph is in the PNG


def test_sd_proxy_forwarded_body_without_content_type(client: httpx.Client) -> None:
    raw = json.dumps(bodies.sd_proxy_forwarded(model="")).encode()
    response = client.post("/sdapi/v1/txt2img", content=raw, headers={"Content-Type": ""})
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert isinstance(images, list) and all(isinstance(i, str) for i in images) and len(images) == 1


def test_lora_tag_loads_the_lora_and_hires_fix(client: httpx.Client) -> None:
    plain = client.post("/sdapi/v1/txt2img", json=bodies.talemate_a1111() | {"seed": 9, "sampler_name": "Euler"}).json()
    lora_body = bodies.talemate_a1111() | {"seed": 9, "sampler_name": "Euler", "prompt": "a lighthouse at dusk <lora:micro_style:1>"}
    with_lora = client.post("/sdapi/v1/txt2img", json=lora_body).json()
    assert pixels(plain["images"][0]) != pixels(with_lora["images"][0])
    assert "micro_style" in client.get("/sdapi/v1/loras").text and LORA in client.get("/sdapi/v1/loras").text
    hires = client.post(
        "/sdapi/v1/txt2img", json=bodies.webuiapi_txt2img() | {"enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 1}
    )
    assert hires.status_code == 200, hires.text
    assert decode_png(hires.json()["images"][0]).size == (96, 96)


@pytest.mark.parametrize(
    ("path", "change", "size"),
    [
        ("/sdapi/v1/txt2img", {"enable_hr": True, "hr_upscaler": "Lanczos", "hr_resize_x": 96, "hr_resize_y": 72}, (96, 72)),
        ("/sdapi/v1/txt2img", {"enable_hr": True, "hr_upscaler": "Latent (nearest-exact)", "hr_scale": 1.25}, (80, 80)),
        ("/sdapi/v1/txt2img", {"enable_hr": True, "hr_upscaler": "None", "hr_sampler_name": "Heun", "hr_scheduler": "Karras"}, (128, 128)),
        ("/sdapi/v1/img2img", {"resize_mode": 1}, (64, 64)),
        ("/sdapi/v1/img2img", {"resize_mode": 2}, (64, 64)),
        ("/sdapi/v1/img2img", {"resize_mode": 3}, (64, 64)),
        ("/sdapi/v1/img2img", {"mask": "MASK", "inpainting_fill": 0, "mask_blur": 0}, (64, 64)),
        ("/sdapi/v1/img2img", {"mask": "MASK", "inpainting_fill": 2, "inpainting_mask_invert": 1}, (64, 64)),
    ],
)
def test_graph_variants_run(client: httpx.Client, path: str, change: dict[str, Any], size: tuple[int, int]) -> None:
    body = bodies.webuiapi_txt2img(seed=3) | {"hr_second_pass_steps": 1}
    if path.endswith("img2img"):
        body = bodies.webuiapi_img2img(image_b64=bodies.png_b64(96, 48))
    if change.get("mask") == "MASK":
        change = change | {"mask": bodies.png_b64(96, 48, color=(255, 255, 255))}
    response = client.post(path, json=body | change)
    assert response.status_code == 200, response.text
    assert decode_png(response.json()["images"][0]).size == size


def test_progress_and_interrupt_during_a_job(server: LiveServer, client: httpx.Client) -> None:
    result: dict[str, Any] = {}

    def run() -> None:
        body = bodies.webuiapi_txt2img(steps=60, n_iter=3, seed=5) | {"sampler_name": "Euler"}
        with httpx.Client(base_url=server.base, timeout=120) as other:
            result["response"] = other.post("/sdapi/v1/txt2img", json=body)

    thread = threading.Thread(target=run)
    thread.start()
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = client.get("/sdapi/v1/progress").json()
        if progress["progress"] > 0 and progress["state"]["job_count"] >= 1:
            seen = progress
            break
        time.sleep(0.05)
    assert seen, "no progress reported while the job ran"
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 60
    for _ in range(100):  # previews are on: the current image shows up while sampling
        current = client.get("/sdapi/v1/progress").json()["current_image"]
        if current:
            decode_png(current)
            break
        time.sleep(0.02)
    else:
        pytest.fail("no current_image while previews are on")
    assert client.get("/sdapi/v1/progress", params={"skip_current_image": "true"}).json()["current_image"] is None
    assert client.post("/sdapi/v1/interrupt").json() == {}
    thread.join(60)
    response = result["response"]
    assert response.status_code == 200
    assert len(response.json()["images"]) < 3  # the remaining iterations were not run
    assert client.get("/sdapi/v1/progress").json()["state"]["job_count"] == 0


def test_skip_abandons_only_the_running_iteration(server: LiveServer, client: httpx.Client) -> None:
    result: dict[str, Any] = {}
    body = bodies.webuiapi_txt2img(steps=60, n_iter=2, seed=50) | {"sampler_name": "Euler"}

    def run() -> None:
        with httpx.Client(base_url=server.base, timeout=120) as other:
            result["response"] = other.post("/sdapi/v1/txt2img", json=body)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = client.get("/sdapi/v1/progress", params={"skip_current_image": "true"}).json()
        if progress["state"]["job_no"] == 0 and progress["state"]["sampling_step"] > 0:
            break
        time.sleep(0.05)
    assert client.post("/sdapi/v1/skip").json() == {}
    thread.join(120)
    answer = result["response"].json()
    assert len(answer["images"]) == 1 and info_of(answer)["all_seeds"] == [51]  # iteration 2 still ran


BAD_BODIES = [
    ({"prompt": "x", "width": 500}, 422, "width"),
    ({"prompt": "x", "height": 20000}, 422, "height"),
    ({"prompt": "x", "steps": -1}, 422, "steps"),
    ({"prompt": "x", "steps": "twenty"}, 422, "steps"),
    ({"prompt": "x", "sampler_name": "Warp Drive"}, 400, "sampler_name"),
    ({"prompt": "x", "width": 16384, "height": 8192}, 400, "width"),  # over the pixel cap
    ({"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [{"enabled": True}]}}}, 400, "alwayson_scripts.controlnet"),
    ({"prompt": "x", "override_settings": {"sd_model_checkpoint": "nope.safetensors"}}, 400, "override_settings.sd_model_checkpoint"),
    ({"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": "deep"}}, 400, "override_settings"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
def test_bad_txt2img_bodies(client: httpx.Client, body: dict[str, Any], status: int, field: str) -> None:
    before = history_count(client)
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(field + ":")
    assert history_count(client) == before and client.get("/queue").json()["queue_pending"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"init_images": ["@@not-base64@@"]}, "init_images.0"),
        ({"init_images": [base64.b64encode(b"plain text").decode()]}, "init_images.0"),
        ({"init_images": [bodies.png_b64(9000, 8000)]}, "init_images.0"),
        ({"init_images": [bodies.png_b64()], "mask": "###"}, "mask"),
        ({"init_images": []}, "init_images"),
        ({}, "init_images"),
    ],
)
def test_bad_img2img_bodies(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    before = history_count(client)
    response = client.post("/sdapi/v1/img2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64, **body})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"].startswith(field + ":")
    assert history_count(client) == before


@pytest.mark.parametrize(
    ("body", "status"),
    [({"image": "@@@"}, 400), ({"image": base64.b64encode(b"text").decode()}, 400), ({"image": bodies.png_b64(9000, 8000)}, 400), ({}, 422)],
)
def test_bad_png_info_bodies(client: httpx.Client, body: dict[str, Any], status: int) -> None:
    response = client.post("/sdapi/v1/png-info", json=body)
    assert response.status_code == status and response.json()["detail"].startswith("image:")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"'])
def test_bodies_that_are_not_objects(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/sdapi/v1/txt2img", content=raw)
    assert response.status_code == 422 and response.json()["detail"].startswith("body:")


def test_listings_and_options_persist(server: LiveServer, client: httpx.Client) -> None:
    models = client.get("/sdapi/v1/sd-models").json()
    assert models == [
        {"title": CHECKPOINT, "model_name": "micro", "hash": models[0]["sha256"][:10], "sha256": models[0]["sha256"],
         "filename": f"checkpoints/{CHECKPOINT}", "config": None}
    ]  # fmt: skip
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    assert [m["name"] for m in client.get("/sdapi/v1/latent-upscale-modes").json()][0] == "Latent"
    assert client.get("/sdapi/v1/upscalers").json()[0]["name"] == "None"  # ST splices latent modes after it
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": []}
    for path in ("/sdapi/v1/sd-vae", "/sdapi/v1/sd-modules", "/sdapi/v1/prompt-styles", "/sdapi/v1/face-restorers"):
        assert isinstance(client.get(path).json(), list)
    assert "loaded" in client.get("/sdapi/v1/embeddings").json()
    assert "ram" in client.get("/sdapi/v1/memory").json()
    assert client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2, "sd_vae": "Automatic"}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
    saved = json.loads((server.config.data_dir / "a1111_options.json").read_text())
    assert saved["CLIP_stop_at_last_layers"] == 2
    bad = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "missing.ckpt"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("sd_model_checkpoint:")
    client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1})


def test_override_settings_restore_afterwards(client: httpx.Client) -> None:
    body = bodies.talemate_a1111() | {"override_settings": {"CLIP_stop_at_last_layers": 2}}
    assert client.post("/sdapi/v1/txt2img", json=body).status_code == 200
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1  # restored (the default)
    kept = body | {"override_settings_restore_afterwards": False}
    response = client.post("/sdapi/v1/txt2img", json=kept)
    assert response.status_code == 200 and info_of(response.json())["clip_skip"] == 2
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
    client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1})


def test_openapi_lists_the_routes_with_models(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    txt2img = spec["paths"]["/sdapi/v1/txt2img"]["post"]
    assert "prompt" in txt2img["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "images" in txt2img["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    for path in ("/sdapi/v1/img2img", "/sdapi/v1/progress", "/sdapi/v1/options", "/v1/images/generations", "/admin/servers"):
        assert path in spec["paths"]


# ------------------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    ("auth", "headers", "status"),
    [
        (AuthSettings(), {"Authorization": "Basic"}, 200),  # SillyTavern, empty auth field
        (AuthSettings(), {"Authorization": "Basic dW5kZWZpbmVk"}, 200),  # garbage: ignored while auth is off
        (AuthSettings(), {"Authorization": "Bearer whatever"}, 200),
        (AuthSettings(mode="basic", user="u", password="p"), {}, 401),  # Talemate A1111 sends no auth
        (AuthSettings(mode="basic", user="u", password="p"), {"Authorization": "Basic"}, 401),
        (AuthSettings(mode="basic", user="u", password="p"), {"Authorization": "Basic " + base64.b64encode(b"u:x").decode()}, 401),
        (AuthSettings(mode="basic", user="u", password="p"), {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}, 200),
        (AuthSettings(mode="bearer", token="tok"), {"Authorization": "Bearer tok"}, 200),  # Talemate SD.Next bearer
        (AuthSettings(mode="bearer", token="tok"), {"Authorization": "Bearer nope"}, 401),
        (AuthSettings(mode="bearer", token="tok"), {}, 401),
    ],
)
def test_auth_matrix(tmp_path: Path, auth: AuthSettings, headers: dict[str, str], status: int) -> None:
    with LiveServer(server_config(tmp_path, auth=auth, node_packs=("nodes.utility",))) as live:
        with httpx.Client(base_url=live.base, timeout=20) as c:
            for path in ("/sdapi/v1/samplers", "/sdapi/v1/options", "/sdapi/v1/progress"):
                response = c.get(path, headers=headers)
                assert response.status_code == status, (path, response.text)
            flags = c.get("/sdapi/v1/cmd-flags", headers=headers)
            if status == 200:
                assert "p" not in flags.json().values() and "tok" not in flags.text.replace("token", "")


def test_talemate_sdnext_with_bearer_and_basic_auth(tmp_path: Path, models_dir: Path) -> None:
    """Talemate's SD.Next backend: ``Authorization: Bearer <key>`` or standard Basic (user + key)."""
    auth = AuthSettings(mode="bearer", token="sdnext-key")
    with pipeline_server(tmp_path, models_dir, auth=auth) as live, httpx.Client(base_url=live.base, timeout=120) as c:
        bearer = {"Authorization": "Bearer sdnext-key"}
        basic = {"Authorization": "Basic " + base64.b64encode(b"talemate:sdnext-key").decode()}
        for headers in (bearer, basic):
            title = c.get("/sdapi/v1/sd-models", headers=headers).json()[0]["title"]
            assert c.get("/sdapi/v1/samplers", headers=headers).status_code == 200
            response = c.post("/sdapi/v1/txt2img", json=bodies.talemate_sdnext_txt2img(model=title), headers=headers)
            assert response.status_code == 200, response.text
            decode_png(response.json()["images"][0])
        before = len(c.get("/history", headers=bearer).json())
        refused = c.post("/sdapi/v1/txt2img", json=bodies.talemate_sdnext_txt2img())
        assert refused.status_code == 401 and "sdnext-key" not in refused.text
        assert len(c.get("/history", headers=bearer).json()) == before
        assert c.post("/sdapi/v1/interrupt", headers=bearer).status_code == 200
