"""ModelManager: shared loads, LRU under a RAM budget, activation, LoRA patches applied and restored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from graphengine.models.checkpoint_maker import make_checkpoint
from graphengine.models.lora_maker import make_lora
from graphengine.models.manager import ModelManager
from graphengine.models.safetensors_io import CheckpointError


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mm")
    return {
        "a": make_checkpoint(root / "a.safetensors", "micro", seed=1),
        "b": make_checkpoint(root / "b.safetensors", "micro", seed=2),
        "c": make_checkpoint(root / "c.safetensors", "micro", seed=3),
        "xl": make_checkpoint(root / "xl.safetensors", "micro_sdxl", seed=4),
    }


def test_same_file_gives_the_same_objects(files: dict[str, Path]) -> None:
    manager = ModelManager(device="cpu")
    first = manager.load_checkpoint(files["a"])
    second = manager.load_checkpoint(files["a"])
    assert all(x is y for x, y in zip(first, second))
    model, clip, vae = first
    assert model.arch == "sd15" and model.sampling.prediction == "eps"
    assert model.latent_format.scale_factor == 0.18215 and len(model.latent_format.latent_rgb_factors) == 4
    assert model.sampling.sigmas.shape == (1000,)
    assert model.sampling.sigmas[0] == pytest.approx(0.0292, abs=1e-4)
    assert model.sampling.sigmas[-1] == pytest.approx(14.6146, abs=1e-3)
    assert bool((model.sampling.sigmas[1:] > model.sampling.sigmas[:-1]).all())
    assert clip.tokenizers[0]("a cat").input_ids == [49406, 320, 2368, 49407]
    assert vae.latent_format == model.latent_format


@pytest.mark.slow
def test_lru_evicts_least_recently_used_under_the_ram_budget(files: dict[str, Path]) -> None:
    probe = ModelManager(device="cpu")
    probe.load_checkpoint(files["a"])
    one = probe.cached_bytes()
    manager = ModelManager(device="cpu", ram_budget=int(one * 2.5))
    a1 = manager.load_checkpoint(files["a"])
    manager.load_checkpoint(files["b"])
    manager.load_checkpoint(files["a"])  # a is now the most recent
    manager.load_checkpoint(files["c"])  # over budget: b (least recent) goes
    cached = [Path(p).name for p in manager.cached_files()]
    assert cached == ["a.safetensors", "c.safetensors"]
    assert manager.cached_bytes() <= int(one * 2.5)
    assert manager.load_checkpoint(files["a"])[0] is a1[0]
    b_again = manager.load_checkpoint(files["b"])
    assert b_again[0] is not None and "b.safetensors" in manager.cached_files()[-1]


@pytest.mark.slow
def test_models_in_use_are_not_evicted_and_unload_all_forgets(files: dict[str, Path]) -> None:
    manager = ModelManager(device="cpu", ram_budget=1)
    model, _, _ = manager.load_checkpoint(files["a"])
    with model.activate() as unet:
        manager.load_checkpoint(files["b"])
        assert any(p.endswith("a.safetensors") for p in manager.cached_files())
        assert unet is model.unet
    manager.unload_all()
    assert manager.cached_files() == []
    assert manager.load_checkpoint(files["a"])[0] is not model


def test_activate_yields_modules_for_each_socket(files: dict[str, Path]) -> None:
    model, clip, vae = ModelManager(device="cpu").load_checkpoint(files["xl"])
    with clip.activate() as encoders:
        assert encoders == clip.encoders and len(encoders) == 2
    with vae.activate() as autoencoder:
        assert autoencoder is vae.autoencoder
    assert model.arch == "sdxl" and model.latent_format.scale_factor == 0.13025


@pytest.mark.parametrize("naming", ["diffusers", "ldm"])
def test_lora_patches_change_weights_while_active_and_restore_exactly(files: dict[str, Path], tmp_path: Path, naming: str) -> None:
    manager = ModelManager(device="cpu")
    model, clip, _ = manager.load_checkpoint(files["a"])
    lora_file = make_lora(tmp_path / f"{naming}.safetensors", files["a"], naming=naming, seed=5)
    parsed = manager.load_lora(lora_file)
    patched_model, patched_clip = manager.apply_lora(model, clip, parsed, 0.8, 1.0)
    assert patched_model is not model and patched_model.unet is model.unet  # shared module, patch on the side
    attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    original = model.unet.get_parameter(attn).detach().clone()
    original_te = clip.encoders[0].get_parameter(_q_proj(clip.encoders[0])).detach().clone()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(1))
    with model.activate() as unet, torch.no_grad():
        plain = unet(x, 500, encoder_hidden_states=context).sample
    with patched_model.activate() as unet, torch.no_grad():
        changed = unet.get_parameter(attn).detach().clone()
        lora_out = unet(x, 500, encoder_hidden_states=context).sample
    with patched_clip.activate() as encoders:
        te_changed = encoders[0].get_parameter(_q_proj(encoders[0])).detach().clone()
    assert not torch.equal(changed, original)
    assert not torch.allclose(lora_out, plain)
    assert not torch.equal(te_changed, original_te)
    # exact restore after the context
    assert torch.equal(model.unet.get_parameter(attn), original)
    assert torch.equal(clip.encoders[0].get_parameter(_q_proj(clip.encoders[0])), original_te)
    # the delta is strength · alpha/rank · up @ down
    state = load_file(str(lora_file))
    down_key = next(k for k in state if k.endswith("lora_down.weight") and "attn1_to_q" in k and ("down_blocks_0" in k or "input_blocks_1_" in k))
    up = state[down_key.replace("lora_down", "lora_up")].float()
    down = state[down_key].float()
    alpha = float(state[down_key.replace("lora_down.weight", "alpha")])
    expected = original + 0.8 * (alpha / down.shape[0]) * (up @ down)
    assert torch.allclose(changed, expected, atol=1e-6)


def _q_proj(encoder: torch.nn.Module) -> str:
    return next(name for name, _ in encoder.named_parameters() if name.endswith("layers.0.self_attn.q_proj.weight"))


def test_zero_strength_and_wrong_lora_are_handled(files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = ModelManager(device="cpu")
    model, clip, _ = manager.load_checkpoint(files["a"])
    foreign = tmp_path / "foreign.safetensors"
    save_file({"lora_unet_joint_blocks_0_x.lora_down.weight": torch.ones(2, 8),
               "lora_unet_joint_blocks_0_x.lora_up.weight": torch.ones(8, 2)}, str(foreign))
    with pytest.raises(CheckpointError, match="no layer of this LoRA matches"):
        manager.apply_lora(model, clip, manager.load_lora(foreign), 1.0, 0.0)
    # a LoRA for another model of similar shape: layers whose shapes differ are reported and skipped
    xl_lora = make_lora(tmp_path / "xl.safetensors", files["xl"], naming="ldm", text=False)
    with caplog.at_level("WARNING"):
        patched, _ = manager.apply_lora(model, clip, manager.load_lora(xl_lora), 1.0, 0.0)
    assert "shape mismatch" in caplog.text
    with patched.activate():
        pass  # the layers that do fit apply without error
    assert manager.apply_lora(model, clip, manager.load_lora(xl_lora), 0.0, 0.0) == (model, clip)
    not_lora = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(not_lora))
    with pytest.raises(CheckpointError, match="not a LoRA"):
        manager.load_lora(not_lora)


def test_peft_style_lora_keys(files: dict[str, Path], tmp_path: Path) -> None:
    manager = ModelManager(device="cpu")
    model, clip, _ = manager.load_checkpoint(files["a"])
    target = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    weight = model.unet.get_parameter(target + ".weight")
    peft = tmp_path / "peft.safetensors"
    save_file({f"unet.{target}.lora_A.weight": torch.ones(2, weight.shape[1]),
               f"unet.{target}.lora_B.weight": torch.ones(weight.shape[0], 2)}, str(peft))
    patched, _ = manager.apply_lora(model, None, manager.load_lora(peft), 0.5, 0.0)
    before = weight.detach().clone()
    with patched.activate() as unet:
        assert torch.allclose(unet.get_parameter(target + ".weight"), before + 0.5 * 2.0)  # no alpha: scale 1
    assert torch.equal(model.unet.get_parameter(target + ".weight"), before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_activation_moves_to_cuda_in_half_precision_and_offloads(files: dict[str, Path], tmp_path: Path) -> None:
    manager = ModelManager()
    assert manager.device.type == "cuda" and manager.dtype == torch.float16
    model, clip, vae = manager.load_checkpoint(files["a"])
    lora_file = make_lora(tmp_path / "gpu.safetensors", files["a"])
    patched, _ = manager.apply_lora(model, clip, manager.load_lora(lora_file), 1.0, 1.0)
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    with patched.activate() as unet, torch.no_grad():
        assert unet.device.type == "cuda" and unet.dtype == torch.float16
        original = None
        out = unet(torch.randn(2, 4, 8, 8, device="cuda", dtype=torch.float16), 500,
                   encoder_hidden_states=torch.randn(2, 77, 64, device="cuda", dtype=torch.float16)).sample
        assert torch.isfinite(out).all()
    with model.activate() as unet:
        original = unet.get_parameter(name).detach().clone()
    manager.free()
    assert model.unet.device.type == "cpu"
    with model.activate() as unet:
        assert torch.equal(unet.get_parameter(name), original)
    tiny = ModelManager(vram_budget=1)
    m2, _, v2 = tiny.load_checkpoint(files["b"])
    with m2.activate():
        pass
    with v2.activate():
        assert m2.unet.device.type == "cpu"  # offloaded to make room under the budget
