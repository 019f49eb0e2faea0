"""Real servers on loopback ports for the HTTP/websocket tests (uvicorn in a thread, real sockets)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets

from graphengine.http.app import create_app
from graphengine.http.config import ServerConfig

REPO = Path(__file__).resolve().parents[1]
TEST_PACKS = ("tests.server_nodes", "nodes.image")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``create_app(config)`` served by uvicorn on a free loopback port until ``stop()``."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.app = create_app(config)
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    @property
    def services(self) -> Any:
        return self.app.state.services

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, client_id: str | None = None, path: str = "/ws") -> str:
        query = f"?clientId={client_id}" if client_id is not None else ""
        return f"ws://127.0.0.1:{self.port}{path}{query}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10, **kwargs)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def server_config(tmp_path: Path, **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "models_dir": tmp_path / "models",
        "node_packs": TEST_PACKS,
        "port": 0,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


def text_prompt(text: str = "hello", *, steps: int = 0, delay: float = 0.0, node: str = "1") -> dict[str, Any]:
    return {node: {"class_type": "ServerText", "inputs": {"text": text, "steps": steps, "delay": delay}}}


async def receive_json_until(
    ws: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0, binary: list[bytes] | None = None
) -> list[dict[str, Any]]:
    """Text messages up to and including the first one for which ``done`` is true."""
    messages: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError(f"no terminal message; got {[m.get('type') for m in messages]}")
        frame = await asyncio.wait_for(ws.recv(), remaining)
        if isinstance(frame, bytes):
            if binary is not None:
                binary.append(frame)
            continue
        message = json.loads(frame)
        messages.append(message)
        if done(message):
            return messages


def finished(prompt_id: str) -> Callable[[dict[str, Any]], bool]:
    """The terminal ``executing {node: null, prompt_id}`` message of ``prompt_id``."""
    return lambda m: m["type"] == "executing" and m["data"].get("node") is None and m["data"].get("prompt_id") == prompt_id


def connect(url: str, **kwargs: Any) -> Any:
    return websockets.connect(url, open_timeout=10, max_size=None, **kwargs)


def wait_history(client: httpx.Client, prompt_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/history/{prompt_id}").json()
        if body:
            return body[prompt_id]
        time.sleep(0.02)
    raise TimeoutError(f"prompt {prompt_id} did not finish")
