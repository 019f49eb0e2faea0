"""Real graphengine servers with the micro model for the A1111 / OpenAI / downstream tests."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from graphengine.packs import BUILTIN_PACK_MODULES
from tests.http_harness import LiveServer, server_config

CHECKPOINT = "micro.safetensors"
LORA = "micro_style.safetensors"


def make_models(models_dir: Path, *, lora: bool = False) -> Path:
    """A models folder with the random-weight micro checkpoint (and a LoRA for it)."""
    from graphengine.models.checkpoint_maker import make_checkpoint

    checkpoint = make_checkpoint(models_dir / "checkpoints" / CHECKPOINT, "micro", seed=1, dtype="fp32")
    if lora:
        from graphengine.models.lora_maker import make_lora

        (models_dir / "loras").mkdir(parents=True, exist_ok=True)
        make_lora(models_dir / "loras" / LORA, checkpoint, seed=2)
    return models_dir


def pipeline_server(root: Path, models_dir: Path, **overrides: Any) -> LiveServer:
    settings: dict[str, Any] = {"node_packs": BUILTIN_PACK_MODULES, "models_dir": models_dir}
    settings.update(overrides)
    return LiveServer(server_config(root, **settings))


def decode_png(b64: str) -> Any:
    """What webuiapi / SillyTavern do with ``images[i]``: b64decode, open with PIL."""
    from PIL import Image

    assert not b64.startswith("data:"), "images must be raw base64"
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    image.load()
    return image


def pixels(b64: str) -> bytes:
    return decode_png(b64).convert("RGB").tobytes()


def history_count(client: Any) -> int:
    return len(client.get("/history").json())


def info_of(body: dict[str, Any]) -> dict[str, Any]:
    """webuiapi: ``json.loads(r['info'])``."""
    assert isinstance(body["info"], str)
    return json.loads(body["info"])
