"""`graphengine make-checkpoint`: LDM layout, determinism, and round trips through our loader."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphengine.models.checkpoint_maker import make_checkpoint
from graphengine.models.ldm_layout import arch_spec, checkpoint_archs, checkpoint_layout
from graphengine.models.safetensors_io import read_header

REPO = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = make_checkpoint(tmp_path / "a.safetensors", "micro", seed=7)
    b = make_checkpoint(tmp_path / "b.safetensors", "micro", seed=7)
    c = make_checkpoint(tmp_path / "c.safetensors", "micro", seed=8)
    assert sha256(a) == sha256(b)
    assert sha256(a) != sha256(c)
    assert a.stat().st_size < 12_000_000  # a few MB


def test_micro_file_has_the_ldm_layout_and_dtype(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "m.safetensors", "micro", dtype="bf16")
    header = read_header(path)
    names = set(header.tensors)
    assert "model.diffusion_model.input_blocks.0.0.weight" in names
    assert "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight" in names
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in names
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in names
    assert header.tensors["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"].shape[0] == 49408
    assert {info.dtype for info in header.tensors.values()} == {"BF16"}
    assert header.metadata["graphengine.arch"] == "micro"
    assert names == set(checkpoint_layout(arch_spec("micro")))


def test_sdxl_layout_uses_conditioner_and_open_clip_names() -> None:
    layout = checkpoint_layout(arch_spec("sdxl"))
    assert layout["model.diffusion_model.label_emb.0.0.weight"] == (1280, 2816)
    assert layout["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"] == (3840, 1280)
    assert layout["conditioner.embedders.1.model.text_projection"] == (1280, 1280)
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in layout
    total = sum(__import__("math").prod(s) for s in layout.values())
    assert 3.4e9 < total < 3.6e9  # SDXL base: about 3.5 billion parameters


def test_full_sd15_layout_has_the_real_parameter_count() -> None:
    import math

    layout = checkpoint_layout(arch_spec("sd15"))
    unet = sum(math.prod(s) for k, s in layout.items() if k.startswith("model.diffusion_model."))
    assert unet == 859_520_964  # SD1.5's UNet


@pytest.mark.slow
def test_cli_writes_refuses_overwrite_and_bad_names(tmp_path: Path) -> None:
    out = tmp_path / "cli.safetensors"
    cmd = [sys.executable, "-m", "graphengine.cli", "make-checkpoint", str(out), "--arch", "micro", "--seed", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "micro" in done.stdout and out.is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode != 0 and "already exists" in again.stderr
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "x.ckpt"), "--arch", "micro"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and ".safetensors" in bad.stderr
    assert sha256(out) == sha256(make_checkpoint(tmp_path / "api.safetensors", "micro", seed=3))


def test_every_arch_is_described_as_data() -> None:
    archs = checkpoint_archs()
    assert {"micro", "small", "sd15", "sdxl"} <= set(archs)
    for spec in archs.values():
        assert {"family", "unet", "vae", "text_encoders"} <= set(spec)


@pytest.mark.slow
def test_small_round_trips_through_our_loader(tmp_path: Path) -> None:
    """`small` (SD1.5-compatible) loads as SD1.5 with the full CLIP-L and SD VAE; report size and timings."""
    import torch

    from graphengine.models.manager import ModelManager

    path = tmp_path / "small.safetensors"
    started = time.perf_counter()
    make_checkpoint(path, "small", seed=0)
    made = time.perf_counter() - started
    try:
        size = path.stat().st_size
        assert 520e6 < size < 620e6
        started = time.perf_counter()
        model, clip, vae = ModelManager(device="cpu").load_checkpoint(path)
        loaded = time.perf_counter() - started
        print(f"\nsmall: {size / 1e6:.1f} MB, make-checkpoint {made:.1f} s, load {loaded:.1f} s")
        assert model.arch == clip.arch == "sd15"
        unet = model.unet
        assert unet.config.block_out_channels == (320, 640) or list(unet.config.block_out_channels) == [320, 640]
        assert unet.config.cross_attention_dim == 768
        encoder = clip.encoders[0]
        assert encoder.config.num_hidden_layers == 12 and encoder.config.hidden_size == 768
        assert list(vae.autoencoder.config.block_out_channels) == [128, 256, 512, 512]
        with torch.no_grad():
            out = unet(torch.randn(1, 4, 8, 8), 999, encoder_hidden_states=torch.randn(1, 77, 768)).sample
        assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
    finally:
        path.unlink(missing_ok=True)
