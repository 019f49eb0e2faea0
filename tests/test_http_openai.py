"""``/v1/images/generations`` and ``/v1/images/edits`` running locally on the micro model."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest

from tests import a1111_bodies as bodies
from tests.a1111_server import decode_png, history_count, make_models, pipeline_server
from tests.http_harness import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("openai")
    with pipeline_server(root, make_models(root / "models")) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as c:
        yield c


def test_generations_b64_json_with_n_and_size(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images/generations",
        json={"prompt": "a kite", "n": 2, "size": "64x96", "response_format": "b64_json", "model": "dall-e-3", "steps": 2},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["created"], int) and len(body["data"]) == 2
    for item in body["data"]:
        assert decode_png(item["b64_json"]).size == (64, 96) and item["revised_prompt"] == "a kite"


def test_generations_url_points_at_our_view(server: LiveServer, client: httpx.Client) -> None:
    response = client.post("/v1/images/generations", json={"prompt": "a boat", "size": "64x64", "steps": 2})
    url = response.json()["data"][0]["url"]  # response_format defaults to url, as OpenAI's does
    assert url.startswith(server.base + "/view?") and "type=output" in url
    assert httpx.get(url).content.startswith(b"\x89PNG")


def test_generations_with_the_extended_a1111_body(client: httpx.Client) -> None:
    body = bodies.sd_proxy_forwarded(prompt="a clock") | {"response_format": "b64_json", "seed": 31, "sampler_name": "Euler"}
    first = client.post("/v1/images/generations", json=body).json()["data"][0]["b64_json"]
    again = client.post("/v1/images/generations", json=body).json()["data"][0]["b64_json"]
    assert decode_png(first).tobytes() == decode_png(again).tobytes()  # the seed was honoured


def test_edits_multipart_with_an_openai_mask(client: httpx.Client) -> None:
    from PIL import Image

    image = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(image, format="PNG")
    mask_image = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask_image.paste((0, 0, 0, 0), (16, 16, 48, 48))  # transparent = edit here
    mask = io.BytesIO()
    mask_image.save(mask, format="PNG")
    response = client.post(
        "/v1/images/edits",
        files={"image": ("in.png", image.getvalue(), "image/png"), "mask": ("mask.png", mask.getvalue(), "image/png")},
        data={"prompt": "a patch", "n": "1", "response_format": "b64_json", "steps": "2"},
    )
    assert response.status_code == 200, response.text
    assert decode_png(response.json()["data"][0]["b64_json"]).size == (64, 64)
    history = client.get("/history").json()
    graph = list(history.values())[-1]["prompt"][2]
    assert {"ETN_LoadImageBase64", "ETN_LoadMaskBase64", "VAEEncodeForInpaint"} & {n["class_type"] for n in graph.values()}


def test_edits_json_body(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images/edits",
        json={"prompt": "brighter", "image": "data:image/png;base64," + bodies.png_b64(72, 64), "response_format": "b64_json", "steps": 2},
    )
    assert response.status_code == 200, response.text
    assert decode_png(response.json()["data"][0]["b64_json"]).size == (72, 64)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/images/generations", {"prompt": "x", "size": "100x100"}, "size"),
        ("/v1/images/generations", {"prompt": "x", "size": "huge"}, "size"),
        ("/v1/images/generations", {"prompt": "x", "n": 0}, "n"),
        ("/v1/images/generations", {"prompt": "x", "response_format": "png"}, "response_format"),
        ("/v1/images/generations", {"prompt": "x", "steps": -2}, "steps"),
        ("/v1/images/edits", {"prompt": "x"}, "image"),
        ("/v1/images/edits", {"prompt": "x", "image": "!!!"}, "image"),
        ("/v1/images/edits", {"prompt": "x", "image": base64.b64encode(b"text").decode()}, "image"),
    ],
)
def test_bad_requests_name_the_field(client: httpx.Client, path: str, body: dict, field: str) -> None:
    before = history_count(client)
    response = client.post(path, json=body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()
    assert error["detail"].startswith(field + ":") and error["error"]["message"] == error["detail"]
    assert history_count(client) == before
