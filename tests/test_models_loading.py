"""Loading real files: safetensors checks, pickle opt-in, single-file, UNet-only, VAE-only, diffusers folders."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from graphengine.models.checkpoint_maker import make_checkpoint
from graphengine.models.loading import load_components, load_diffusers_folder, load_vae_file
from graphengine.models.safetensors_io import (
    CheckpointError,
    PickleRefused,
    load_state_dict,
    read_header,
)


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro.safetensors", "micro", seed=1)


@pytest.fixture(scope="module")
def micro_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro_sdxl.safetensors", "micro_sdxl", seed=2)


def test_truncated_file_is_refused_with_its_name_and_reason(micro: Path, tmp_path: Path) -> None:
    data = micro.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_components(cut, dtype=torch.float32)
    assert "cut.safetensors" in str(info.value) and "truncated" in str(info.value)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="tiny.safetensors.*not a safetensors"):
        read_header(tiny)


def test_corrupt_header_and_garbage_are_refused(micro: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_state_dict(garbage)
    data = bytearray(micro.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    data[8:20] = b"not json!!!!"
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="broken.safetensors.*header"):
        load_state_dict(broken)
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    bad_range = tmp_path / "range.safetensors"
    bad_range.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * 16)
    with pytest.raises(CheckpointError, match="does not match its shape"):
        read_header(bad_range)


def test_wrong_architecture_is_named(tmp_path: Path) -> None:
    other = tmp_path / "flux.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(CheckpointError, match="flux.safetensors.*Flux"):
        load_components(other, dtype=torch.float32)


def test_pickle_is_refused_unless_allowed_then_weights_only(micro: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = load_file(str(micro))
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, ckpt)
    monkeypatch.delenv("GRAPHENGINE_ALLOW_PICKLE", raising=False)
    with pytest.raises(PickleRefused, match="model.ckpt.*GRAPHENGINE_ALLOW_PICKLE"):
        load_components(ckpt, dtype=torch.float32)
    monkeypatch.setenv("GRAPHENGINE_ALLOW_PICKLE", "1")
    components = load_components(ckpt, dtype=torch.float32)
    assert components.detected.arch == "sd15"

    class Evil:
        def __reduce__(self):  # noqa: D105 - a pickle that would run code
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_state_dict(evil)


def test_micro_loads_as_fp32_modules_that_run(micro: Path) -> None:
    c = load_components(micro, dtype=torch.float32)
    assert c.unet.dtype == torch.float32 and c.vae.dtype == torch.float32
    with torch.no_grad():
        eps = c.unet(torch.randn(1, 4, 8, 8), 500, encoder_hidden_states=torch.randn(1, 77, 64)).sample
        ids = c.tokenizers[0]("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
        hidden = c.text_encoders[0](ids).last_hidden_state
        image = c.vae.decode(torch.randn(1, 4, 8, 8)).sample
    assert eps.shape == (1, 4, 8, 8) and torch.isfinite(eps).all()
    assert hidden.shape == (1, 77, 64)
    assert image.shape == (1, 3, 64, 64)
    # weights are the file's (converted), not a random init
    state = load_file(str(micro))
    assert torch.equal(c.unet.conv_in.weight, state["model.diffusion_model.input_blocks.0.0.weight"].float())
    assert torch.equal(c.vae.decoder.conv_in.weight, state["first_stage_model.decoder.conv_in.weight"].float())


def test_micro_sdxl_loads_two_encoders_with_projection(micro_sdxl: Path) -> None:
    c = load_components(micro_sdxl, dtype=torch.float32)
    assert c.detected.arch == "sdxl"
    assert [type(e).__name__ for e in c.text_encoders] == ["CLIPTextModel", "CLIPTextModelWithProjection"]
    ids = c.tokenizers[1]("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, -1] == 0  # clip_g pads with 0
    with torch.no_grad():
        out = c.text_encoders[1](ids, output_hidden_states=True)
        eps = c.unet(
            torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=torch.randn(1, 77, 160),
            added_cond_kwargs={"text_embeds": out.text_embeds, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])},
        ).sample
    assert out.text_embeds.shape == (1, 96) and torch.isfinite(eps).all()
    state = load_file(str(micro_sdxl))
    qkv = state["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"].float()
    layer = c.text_encoders[1].text_model.encoder.layers[0].self_attn
    assert torch.equal(layer.q_proj.weight, qkv[:96]) and torch.equal(layer.v_proj.weight, qkv[192:])


def test_unet_only_and_vae_only_files(micro: Path, tmp_path: Path) -> None:
    state = load_file(str(micro))
    unet_file = tmp_path / "unet.safetensors"
    save_file({k[len("model.diffusion_model."):]: v for k, v in state.items() if k.startswith("model.diffusion_model.")}, str(unet_file))
    c = load_components(unet_file, dtype=torch.float32, parts=("unet",))
    assert c.unet is not None and c.vae is None and c.text_encoders == ()
    vae_file = tmp_path / "vae.safetensors"
    save_file({k[len("first_stage_model."):]: v for k, v in state.items() if k.startswith("first_stage_model.")}, str(vae_file))
    vae = load_vae_file(vae_file, dtype=torch.float32)
    assert torch.equal(vae.decoder.conv_in.weight, state["first_stage_model.decoder.conv_in.weight"].float())
    # the same VAE in diffusers key layout
    diffusers_file = tmp_path / "vae_diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(diffusers_file))
    again = load_vae_file(diffusers_file, dtype=torch.float32)
    assert torch.equal(again.decoder.conv_in.weight, vae.decoder.conv_in.weight)
    with pytest.raises(CheckpointError, match="not a VAE"):
        load_vae_file(unet_file, dtype=torch.float32)


def test_diffusers_folder_loads_offline(micro: Path, tmp_path: Path) -> None:
    c = load_components(micro, dtype=torch.float32)
    folder = tmp_path / "pipe"
    c.unet.save_pretrained(folder / "unet")
    c.vae.save_pretrained(folder / "vae")
    c.text_encoders[0].save_pretrained(folder / "text_encoder")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": "v_prediction"}))
    (folder / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"],
                                                         "text_encoder": ["transformers", "CLIPTextModel"]}))
    loaded = load_diffusers_folder(folder, dtype=torch.float32)
    assert loaded.detected.arch == "sd15" and loaded.detected.prediction == "v_prediction"
    assert torch.equal(loaded.unet.conv_in.weight, c.unet.conv_in.weight)
    assert loaded.tokenizers[0]("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    with pytest.raises(CheckpointError, match="model_index.json"):
        load_diffusers_folder(tmp_path, dtype=torch.float32)


def test_micro_sd2_loads_open_clip_h_layout_with_gelu_and_zero_padding(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "sd2.safetensors", "micro_sd2", seed=3)
    c = load_components(path, dtype=torch.float32)
    assert c.detected.arch == "sd2" and c.detected.prediction == "eps"
    encoder = c.text_encoders[0]
    assert type(encoder).__name__ == "CLIPTextModel" and encoder.config.hidden_act == "gelu"
    assert encoder.config.num_hidden_layers == 2  # every layer kept; the encode step picks the penultimate
    assert c.unet.config.use_linear_projection and c.unet.config.upcast_attention
    ids = c.tokenizers[0]("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, -1] == 0
    with torch.no_grad():
        hidden = encoder(ids).last_hidden_state
        eps = c.unet(torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=hidden).sample
    assert torch.isfinite(eps).all()
