"""A real graphengine server on a loopback port for the template HTTP and browser tests, with a
small fast node pack (a solid-colour image with progress steps) plus the real image packs."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from graphengine.node import Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Image


class TemplateTestSolid(Node):
    """A solid-colour RGB image; reports ``steps`` progress steps ``delay`` seconds apart."""

    category: ClassVar[str] = "testing"

    width: int = Input(8, min=1, max=512)
    height: int = Input(8, min=1, max=512)
    red: float = Input(0.5, min=0.0, max=1.0)
    steps: int = Input(1, min=0, max=100)
    delay: float = Input(0.0, min=0.0, max=2.0)

    class Outputs(NodeOutputs):
        image: Image = Output(name="IMAGE")

    def run(self, ctx: NodeContext) -> TemplateTestSolid.Outputs:
        import torch

        for step in range(self.steps):
            time.sleep(self.delay)
            ctx.progress(step + 1, self.steps)
        pixels = torch.zeros((1, self.height, self.width, 3), dtype=torch.float32)
        pixels[..., 0] = self.red
        pixels[..., 2] = 0.25
        return self.Outputs(image=Image(pixels))


def pack() -> NodePack:
    return NodePack("templates-test", (TemplateTestSolid,))


SOLID_TEMPLATE = {
    "name": "solid",
    "description": "a solid image, inverted and saved",
    "defaults": {"width": 16, "height": 16, "red": "0.8", "steps": 3, "prefix": "solid"},
    "workflow": {
        "1": {"class_type": "TemplateTestSolid",
              "inputs": {"width": "%width%", "height": "%height%", "red": "%red%", "steps": "%steps%", "delay": 0.05}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "%prefix%"}},
    },
}


@dataclass
class RunningServer:
    base_url: str
    data_dir: Path
    app: Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(data_dir: Path, *, builtin_packs: bool = False, **auth: Any) -> Iterator[RunningServer]:
    """A server over ``data_dir`` (models in ``data_dir/models``); ``auth`` are AuthSettings fields.
    The engine has this module's test pack plus the image packs, or (``builtin_packs``) every built-in
    pack plus the test pack."""
    import uvicorn

    from graphengine.engine import Engine
    from graphengine.http.app import create_app
    from graphengine.http.config import AuthSettings, ServerConfig

    port = free_port()
    config = ServerConfig(host="127.0.0.1", port=port, data_dir=data_dir, models_dir=data_dir / "models",
                          auth=AuthSettings(**auth) if auth else AuthSettings())
    if builtin_packs:
        from graphengine.packs import builtin_packs as load_builtin

        packs: list[Any] = [*load_builtin(strict=True), pack()]
    else:
        packs = [pack(), "nodes.image", "nodes.output", "nodes.image_base64"]
    engine = Engine(packs=packs, data_dir=data_dir, models_dir=data_dir / "models")
    app = create_app(config, engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", data_dir, app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
