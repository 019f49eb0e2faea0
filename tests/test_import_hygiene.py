"""The layer rule, observed from outside: the core, the server app and every built-in node pack import
without torch; ``graphengine --help`` answers; an Engine's registry and its ``/object_info`` are built
without torch and carry what SillyTavern and comfy-catapult read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers")

# The issue-3 node classes every default Engine must offer (ComfyUI names).
ISSUE3_NODES = (
    "CheckpointLoaderSimple", "VAELoader", "LoraLoader", "LoraLoaderModelOnly", "CLIPSetLastLayer", "UNETLoader",
    "CLIPTextEncode", "ConditioningCombine", "ConditioningSetArea", "EmptyLatentImage", "LatentUpscale",
    "LatentUpscaleBy", "KSampler", "KSamplerAdvanced", "VAEDecode", "VAEEncode", "VAEEncodeForInpaint",
    "SetLatentNoiseMask", "LoadImage", "LoadImageMask", "SaveImage", "PreviewImage", "SaveLatent", "LoadLatent",
    "ImageScale", "ImageScaleBy", "ImageInvert", "ImageBatch", "ETN_LoadImageBase64", "ETN_LoadMaskBase64",
    "SaveImageWebsocket", "ETN_SendImageWebSocket",
)
# comfy-catapult's per-class schema (clients.md §1.11).
CATAPULT_KEYS = ("input", "output", "output_is_list", "output_name", "name", "display_name", "description",
                 "category", "output_node")
# The combo lists SillyTavern reads as X.input.required.<name>[0] (clients.md §2.1).
SILLYTAVERN_LISTS = (
    ("KSampler", "sampler_name"), ("KSampler", "scheduler"), ("CheckpointLoaderSimple", "ckpt_name"),
    ("UNETLoader", "unet_name"), ("VAELoader", "vae_name"),
)


def run_python(code: str, tmp_path: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (repo root as cwd); it prints one JSON object last."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRAPHENGINE_DATA_DIR": str(tmp_path / "data"),
           "GRAPHENGINE_MODELS_DIR": str(tmp_path / "models")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def engine_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One subprocess: import the core, the app and every pack, build an Engine and its object_info."""
    tmp_path = tmp_path_factory.mktemp("hygiene")
    for folder, name in (("checkpoints", "model-a.safetensors"), ("vae", "vae-b.safetensors"),
                         ("diffusion_models", "unet-c.safetensors")):
        (tmp_path / "models" / folder).mkdir(parents=True)
        (tmp_path / "models" / folder / name).write_bytes(b"names are listed, files are not read")
    return run_python(
        """
        import importlib, json, sys
        import graphengine, graphengine.engine, graphengine.http.app
        from graphengine.packs import BUILTIN_PACK_MODULES
        for name in BUILTIN_PACK_MODULES:
            importlib.import_module(name)
        import nodes.sampling.names
        heavy_after_imports = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
        from graphengine.engine import Engine
        engine = Engine()
        info = engine.object_info()
        heavy_after_engine = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
        print(json.dumps({"packs": list(BUILTIN_PACK_MODULES), "after_imports": heavy_after_imports,
                          "after_engine": heavy_after_engine, "object_info": info}, default=str))
        """,
        tmp_path,
    )


def test_core_app_and_packs_import_without_torch(engine_report: dict[str, Any]) -> None:
    assert engine_report["packs"], "no built-in packs listed"
    assert engine_report["after_imports"] == []


def test_engine_registry_and_object_info_need_no_torch(engine_report: dict[str, Any]) -> None:
    assert engine_report["after_engine"] == []
    assert engine_report["object_info"]


def test_default_engine_offers_every_issue3_node(engine_report: dict[str, Any]) -> None:
    missing = [name for name in ISSUE3_NODES if name not in engine_report["object_info"]]
    assert missing == [], f"not registered in graphengine/packs.py BUILTIN_PACK_MODULES: {missing}"


@pytest.mark.parametrize(("node", "field"), SILLYTAVERN_LISTS)
def test_sillytavern_combo_lists_are_plain_string_arrays(engine_report: dict[str, Any], node: str, field: str) -> None:
    info = engine_report["object_info"]
    assert node in info, f"{node} missing from /object_info (SillyTavern's model list fails without it)"
    values = info[node]["input"]["required"][field][0]
    assert isinstance(values, list) and all(isinstance(v, str) for v in values)
    if field == "sampler_name":
        assert "euler" in values and "dpmpp_2m" in values
    elif field == "scheduler":
        assert "normal" in values and "karras" in values


def test_combo_lists_show_the_model_folders(engine_report: dict[str, Any]) -> None:
    info = engine_report["object_info"]
    required = {node: info[node]["input"]["required"] for node in ("CheckpointLoaderSimple", "VAELoader", "UNETLoader")}
    assert required["CheckpointLoaderSimple"]["ckpt_name"][0] == ["model-a.safetensors"]
    assert "vae-b.safetensors" in required["VAELoader"]["vae_name"][0]
    assert "unet-c.safetensors" in required["UNETLoader"]["unet_name"][0]


def test_every_node_entry_has_comfy_catapult_keys(engine_report: dict[str, Any]) -> None:
    bad = {}
    for name, entry in engine_report["object_info"].items():
        missing = [key for key in CATAPULT_KEYS if key not in entry]
        lengths = {len(entry.get(k, ())) for k in ("output", "output_is_list", "output_name")}
        if missing or len(lengths) != 1 or entry.get("name") != name or not isinstance(entry.get("output_node"), bool):
            bad[name] = missing or sorted(entry)
    assert bad == {}


def test_graphengine_help_works(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("graphengine")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "graphengine.cli"]
    done = subprocess.run([*command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for word in ("run", "serve", "make-checkpoint", "templates"):
        assert word in done.stdout
