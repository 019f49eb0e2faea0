"""Shared parts of the end-to-end tests: one micro checkpoint and one Engine per test session, small
real PNGs, a real server on a loopback port, and readers for what a user gets back (files, PNG text).

Test modules load this file as a pytest plugin (``pytest_plugins = ("tests.e2e_support",)``), so
``micro_world`` is one session fixture: every e2e module gets the same checkpoint, the same Engine and
its already-loaded model.
"""

from __future__ import annotations

import base64
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO.parent / "shared"
SILLYTAVERN_DIR = SHARED_DIR / "fixtures" / "sillytavern"
MICRO_NAME = "micro.safetensors"
MICRO_SDXL_NAME = "micro-sdxl.safetensors"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class MicroWorld:
    """A data folder, a models folder holding the micro checkpoint, and one Engine over them."""

    root: Path
    data_dir: Path
    models_dir: Path
    checkpoint: Path
    engine: Any  # graphengine.engine.Engine

    @property
    def input_dir(self) -> Path:
        return self.engine.env.paths.input_dir

    @property
    def output_dir(self) -> Path:
        return self.engine.env.paths.output_dir

    def file_of(self, ui_image: Mapping[str, Any]) -> Path:
        """The file a history/ui image entry ``{filename, subfolder, type}`` points at."""
        paths = self.engine.env.paths
        base = {"output": paths.output_dir, "temp": paths.temp_dir, "input": paths.input_dir}[ui_image["type"]]
        return base / ui_image.get("subfolder", "") / ui_image["filename"]

    def model_file(self, folder: str, name: str) -> Path:
        directory = self.models_dir / folder
        directory.mkdir(parents=True, exist_ok=True)
        return directory / name

    def micro_sdxl(self) -> str:
        """The name of an SDXL-shaped micro checkpoint in the checkpoints folder (made on first use)."""
        target = self.model_file("checkpoints", MICRO_SDXL_NAME)
        if not target.is_file():
            from graphengine.models.checkpoint_maker import make_checkpoint

            make_checkpoint(target, "micro_sdxl", seed=0)
        return MICRO_SDXL_NAME


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MicroWorld]:
    """The session's micro checkpoint and Engine (shared by all e2e modules)."""
    from graphengine.engine import Engine
    from graphengine.models.checkpoint_maker import make_checkpoint

    root = tmp_path_factory.mktemp("e2e")
    data_dir, models_dir = root / "data", root / "models"
    checkpoint = make_checkpoint(models_dir / "checkpoints" / MICRO_NAME, "micro", seed=0)
    engine = Engine(data_dir=data_dir, models_dir=models_dir)
    try:
        yield MicroWorld(root, data_dir, models_dir, checkpoint, engine)
    finally:
        engine.close()


# --- images -------------------------------------------------------------------------------------------


def gradient_png(width: int = 48, height: int = 40, *, alpha: bool = False, text: Mapping[str, str] | None = None) -> bytes:
    """A real PNG with a colour gradient (and a circular alpha hole when ``alpha``), plus tEXt chunks
    (character cards carry big ones)."""
    from PIL import Image, PngImagePlugin

    mode = "RGBA" if alpha else "RGB"
    image = Image.new(mode, (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 4) ** 2
            rgb = (x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128)
            pixels[x, y] = (*rgb, 0 if inside else 255) if alpha else rgb
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def huge_png_header_only(width: int, height: int) -> bytes:
    """A valid, tiny 1-bit PNG declaring ``width``×``height`` pixels (all black): a decompression bomb
    in miniature, for pixel-cap tests."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return PNG_MAGIC + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def read_png(path_or_bytes: Path | bytes) -> tuple[tuple[int, int], bytes, dict[str, str]]:
    """(size, raw RGB pixels, PNG text chunks) of a PNG file or PNG bytes."""
    from PIL import Image

    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    assert data.startswith(PNG_MAGIC), "not a PNG"
    with Image.open(io.BytesIO(data)) as image:
        text = dict(getattr(image, "text", {}) or {})
        return image.size, image.convert("RGB").tobytes(), text


# --- a real server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedApp:
    """``create_app(config, engine)`` served by uvicorn on a free loopback port in a thread."""

    def __init__(self, world: MicroWorld):
        import uvicorn

        from graphengine.http.app import create_app
        from graphengine.http.config import ServerConfig

        self.port = free_port()
        config = ServerConfig(
            port=self.port,
            data_dir=world.data_dir,
            models_dir=world.models_dir,
            clear_temp_on_start=False,  # the temp folder is shared with the headless tests
        )
        self.app = create_app(config, engine=world.engine)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name="e2e-uvicorn", daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("e2e server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(15)


__all__ = [
    "MICRO_NAME",
    "MICRO_SDXL_NAME",
    "PNG_MAGIC",
    "REPO",
    "SHARED_DIR",
    "SILLYTAVERN_DIR",
    "MicroWorld",
    "ServedApp",
    "b64",
    "free_port",
    "gradient_png",
    "huge_png_header_only",
    "micro_world",
    "read_png",
]
