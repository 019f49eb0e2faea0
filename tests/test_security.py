"""Security over real sockets: cross-origin and DNS-rebinding requests, path traversal on every file
parameter, body caps and pixel caps."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets

from tests.http_harness import LiveServer, connect, server_config, wait_history

SECRET = f"top-secret-{uuid.uuid4()}"
MAX_UPLOAD = 200_000
MAX_PIXELS = 64 * 64


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    root = tmp_path_factory.mktemp("security")
    (root / "secret.txt").write_text(SECRET)
    config = server_config(root, max_upload_bytes=MAX_UPLOAD, max_image_pixels=MAX_PIXELS)
    with LiveServer(config) as live:
        paths = live.services.paths
        (paths.input_dir / "escape").symlink_to(root, target_is_directory=True)  # a symlinked folder out
        (paths.input_dir / "link.txt").symlink_to(root / "secret.txt")
        (paths.output_dir / "fine.txt").write_text("fine")
        (live.services.user_dir).mkdir(parents=True, exist_ok=True)
        (live.services.user_dir / "out").symlink_to(root, target_is_directory=True)
        yield live


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


TRAVERSAL = [
    "../secret.txt",
    "../../secret.txt",
    "..%2fsecret.txt",
    "%2e%2e/secret.txt",
    "%252e%252e%252fsecret.txt",
    "..\\secret.txt",
    "..%5csecret.txt",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "sub/../../secret.txt",
    "escape/secret.txt",
    "link.txt",
    "a\x00.png",
    "a\nb.png",
    "\u2024\u2024/secret.txt",
    "..",
]


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code in (400, 403, 404), (response.request.url, response.status_code, response.text)
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    assert "error" in response.json()


@pytest.mark.parametrize("name", TRAVERSAL)
def test_traversal_corpus_on_every_file_parameter(server: LiveServer, name: str) -> None:
    with server.client() as client:
        _assert_refused(client.get("/view", params={"filename": name, "type": "input"}))
        _assert_refused(client.get("/view", params={"filename": "fine.txt", "subfolder": name}))
        _assert_refused(client.get("/api/view", params={"filename": name, "subfolder": "escape", "type": "input"}))
        _assert_refused(client.post("/upload/image", files={"image": ("x.png", _png((2, 2)), "image/png")},
                                    data={"subfolder": name}))
        if name not in ("link.txt", "escape/secret.txt", "/etc/passwd", "C:\\Windows\\win.ini", "sub/../../secret.txt"):
            # upload file names are reduced to their last component; bad ones are refused
            response = client.post("/upload/image", files={"image": (name, b"data", "image/png")})
            assert response.status_code in (200, 400), response.text
            if response.status_code == 200:
                stored = response.json()["name"]
                assert "/" not in stored and "\\" not in stored and ".." not in stored
        _assert_refused(client.post("/upload/mask", files={"image": ("m.png", _png((2, 2)), "image/png")},
                                    data={"original_ref": json.dumps({"filename": name, "type": "input"})}))
        _assert_refused(client.post("/upload/mask", files={"image": ("m.png", _png((2, 2)), "image/png")},
                                    data={"original_ref": json.dumps({"filename": "x.png", "subfolder": name})}))
        quoted = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C").replace("\x00", "%00").replace("\n", "%0A")
        if name not in ("escape/secret.txt", "link.txt"):  # these two only escape from input/
            if name != "..":  # a bare ".." path segment is resolved by the client before sending
                _assert_refused(client.get(f"/userdata/{quoted}"))
                _assert_refused(client.post(f"/userdata/{quoted}", content=b"x"))
                _assert_refused(client.delete(f"/userdata/{quoted}"))
            _assert_refused(client.get("/userdata", params={"dir": name}))
            _assert_refused(client.get("/v2/userdata", params={"path": name}))
        response = client.get("/view_metadata/checkpoints", params={"filename": name + ".safetensors"})
        assert response.status_code in (400, 403, 404) and SECRET not in response.text
        if name != "..":  # a bare ".." segment is resolved by the client before sending
            _assert_refused(client.get(f"/internal/files/{quoted}"))
        # LoadImage's file input is validated against the input folder too
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "ServerImageSize", "inputs": {"image": ["1", 0]}}}
        rejected = client.post("/prompt", json={"prompt": prompt})
        assert rejected.status_code == 400 and SECRET not in rejected.text


def test_symlinked_user_folder_is_not_followed(server: LiveServer) -> None:
    with server.client() as client:
        _assert_refused(client.get("/userdata/out%2Fsecret.txt"))
        _assert_refused(client.get("/userdata", params={"dir": "out"}))


def test_cross_origin_state_changes_are_refused(server: LiveServer) -> None:
    host = f"127.0.0.1:{server.port}"
    body = {"prompt": {"1": {"class_type": "ServerText", "inputs": {"text": "x", "steps": 0, "delay": 0}}}}
    with server.client() as client:
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}", "http://localhost.evil.example"):
            for method, path, payload in [("POST", "/prompt", body), ("POST", "/queue", {"clear": True}),
                                          ("POST", "/interrupt", None), ("POST", "/settings", {"a": 1}),
                                          ("DELETE", "/userdata/x.json", None), ("POST", "/api/prompt", body)]:
                response = client.request(method, path, json=payload, headers={"Origin": origin})
                assert response.status_code == 403, (origin, path)
                assert response.json()["error"]["type"] == "origin_not_allowed"
        same = client.post("/prompt", json=body, headers={"Origin": f"http://{host}"})
        assert same.status_code == 200
        assert client.post("/prompt", json=body, headers={"Origin": "http://localhost:1234", "Host": "localhost"}).status_code == 200
        wait_history(client, same.json()["prompt_id"])
        assert client.get("/queue", headers={"Origin": "http://evil.example"}).status_code == 200  # reads need CORS to be read
        rebinding = client.get("/history", headers={"Host": f"evil.example:{server.port}"})
        assert rebinding.status_code == 403 and rebinding.json()["error"]["type"] == "host_not_allowed"

    async def ws_status(origin: str) -> int:
        try:
            async with connect(server.ws_url("x1"), origin=origin):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(ws_status("http://evil.example")) == 403
    assert asyncio.run(ws_status("null")) == 403
    assert asyncio.run(ws_status(f"http://{host}")) == 101


def test_cors_flag_answers_preflight_and_allows_the_origin(tmp_path: Path) -> None:
    with LiveServer(server_config(tmp_path, cors_origin="https://app.example")) as live, live.client() as client:
        preflight = client.options("/prompt", headers={"Origin": "https://app.example",
                                                       "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200 and preflight.content == b""
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        ok = client.post("/queue", json={"clear": True}, headers={"Origin": "https://app.example"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        assert client.post("/queue", json={"clear": True}, headers={"Origin": "https://other.example"}).status_code == 403


def _raw_request(port: int, head: bytes, body_chunks: list[bytes] = (), read_timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                part = sock.recv(65536)
                if not part:
                    break
                data += part
        except (ConnectionResetError, socket.timeout):
            pass
        return data


def test_oversize_body_is_refused_before_it_is_read(server: LiveServer) -> None:
    started = time.monotonic()
    head = (f"POST /upload/image HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: multipart/form-data; "
            f"boundary=x\r\nContent-Length: {50 * 1024 * 1024 * 1024}\r\n\r\n").encode()
    reply = _raw_request(server.port, head)  # 50 GB announced, nothing sent
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert time.monotonic() - started < 3
    chunks = [f"{len(b'x' * 65536):x}\r\n".encode() + b"x" * 65536 + b"\r\n" for _ in range(16)]
    chunked_head = (f"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                    "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n").encode()
    assert _raw_request(server.port, chunked_head, chunks).startswith(b"HTTP/1.1 413")
    with server.client() as client:
        big = client.post("/upload/image", files={"image": ("big.png", b"\x00" * (MAX_UPLOAD + 100_000), "image/png")})
        assert big.status_code == 413 and big.json()["error"]["type"] == "body_too_large"
        assert client.get("/prompt").status_code == 200


def test_pixel_cap_and_malformed_multipart(server: LiveServer) -> None:
    with server.client() as client:
        too_big = client.post("/upload/image", files={"image": ("wide.png", _png((65, 64)), "image/png")})
        assert too_big.status_code == 400 and too_big.json()["error"]["type"] == "image_too_large"
        assert client.post("/upload/image", files={"image": ("ok.png", _png((64, 64)), "image/png")}).status_code == 200
        broken = client.post("/upload/image", content=b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc",
                             headers={"content-type": "multipart/form-data; boundary=x"})
        assert broken.status_code == 400
        no_boundary = client.post("/upload/image", content=b"abc", headers={"content-type": "multipart/form-data"})
        assert no_boundary.status_code == 400
        many = {f"f{i}": "v" for i in range(100)}
        assert client.post("/upload/image", data=many, files={"image": ("a.png", b"x", "image/png")}).status_code == 400
        big_field = client.post("/upload/image", data={"subfolder": "s" * 100_000},
                                files={"image": ("a.png", b"x", "image/png")})
        assert big_field.status_code == 400
        assert client.get("/prompt").status_code == 200
