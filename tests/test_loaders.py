"""The loader nodes through the real engine, on random-weight micro checkpoints written by make-checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from safetensors.torch import load_file, save_file

from graphengine.engine import Engine
from graphengine.errors import WorkflowInvalid
from graphengine.models.checkpoint_maker import make_checkpoint
from graphengine.models.lora_maker import make_lora
from graphengine.node import Input, Node, NodeContext, NodeOutputs
from graphengine.registry import NodePack
from nodes import loaders
from nodes.sockets import Clip, Model, Vae


class InspectModels(Node):
    """Test output node: reports what it received (and runs the UNet once)."""

    output_node: ClassVar[bool] = True
    model: Model = Input(optional=True)
    clip: Clip = Input(optional=True)
    vae: Vae = Input(optional=True)

    def run(self, ctx: NodeContext) -> NodeOutputs:
        info: dict[str, Any] = {}
        if self.model is not None:
            with self.model.activate() as unet, torch.no_grad():
                width = unet.config.cross_attention_dim
                fallback = torch.float16 if unet.device.type == "cuda" else torch.float32  # fp8 storage runs in these
                on = {"device": unet.device, "dtype": unet.dtype if unet.dtype.itemsize > 1 else fallback}
                kwargs = {}
                if unet.config.addition_embed_type == "text_time":
                    kwargs["added_cond_kwargs"] = {"text_embeds": torch.zeros(1, 96, **on), "time_ids": torch.zeros(1, 6, **on)}
                out = unet(torch.ones(1, 4, 8, 8, **on), 500, encoder_hidden_states=torch.ones(1, 77, width, **on), **kwargs).sample.float().cpu()
            info.update(arch=self.model.arch, patches=len(self.model.patches), out=float(out.double().sum()),
                        out_values=out.flatten()[:64].tolist(),
                        identity=self.model.identity, object=id(self.model.unet),
                        weight_dtype=str(next(iter(self.model.unet.parameters())).dtype))
        if self.clip is not None:
            info.update(skip=self.clip.skip_layers, clip_patches=len(self.clip.patches),
                        encoders=len(self.clip.encoders), embedding_dirs=list(self.clip.embedding_dirs))
        if self.vae is not None:
            info.update(vae=type(self.vae.autoencoder).__name__, vae_object=id(self.vae.autoencoder))
        return NodeOutputs(ui={"info": [info]})


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("loaders")
    models = root / "models"
    ckpt = make_checkpoint(models / "checkpoints" / "micro.safetensors", "micro", seed=11)
    make_checkpoint(models / "checkpoints" / "xl" / "micro_sdxl.safetensors", "micro_sdxl", seed=12)
    state = load_file(str(ckpt))
    unet_only = {k[len("model.diffusion_model."):]: v for k, v in state.items() if k.startswith("model.diffusion_model.")}
    (models / "unet").mkdir(parents=True)
    save_file(unet_only, str(models / "unet" / "micro_unet.safetensors"))
    (models / "vae").mkdir()
    save_file({k[len("first_stage_model."):]: v for k, v in state.items() if k.startswith("first_stage_model.")},
              str(models / "vae" / "micro_vae.safetensors"))
    make_lora(models / "loras" / "style.safetensors", ckpt, naming="diffusers", seed=1)
    make_lora(models / "loras" / "ldm_style.safetensors", ckpt, naming="ldm", seed=2)
    broken = models / "checkpoints" / "broken.safetensors"
    broken.write_bytes(ckpt.read_bytes()[:5000])
    (models / "embeddings").mkdir()
    from graphengine.models.loading import load_components

    components = load_components(ckpt, dtype=torch.float32)
    pipe = models / "diffusers" / "micro_pipe"
    components.unet.save_pretrained(pipe / "unet")
    components.vae.save_pretrained(pipe / "vae")
    components.text_encoders[0].save_pretrained(pipe / "text_encoder")
    (pipe / "model_index.json").write_text('{"unet": ["diffusers", "UNet2DConditionModel"]}')
    return Engine(packs=[loaders.pack(), NodePack("test", (InspectModels,))], data_dir=root / "data", models_dir=models)


def run(engine: Engine, prompt: dict) -> dict:
    result = engine.run(prompt)
    assert result.status == "success", result.error
    return next(iter(result.outputs.values()))["info"][0]


CKPT = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "micro.safetensors"}}


def test_object_info_matches_comfyui(engine: Engine) -> None:
    info = engine.object_info()
    ckpt = info["CheckpointLoaderSimple"]
    assert ckpt["input"]["required"]["ckpt_name"][0] == ["broken.safetensors", "micro.safetensors", "xl/micro_sdxl.safetensors"]
    assert ckpt["output"] == ["MODEL", "CLIP", "VAE"] and ckpt["category"] == "loaders"
    assert ckpt["display_name"] == "Load Checkpoint"
    lora = info["LoraLoader"]["input"]["required"]
    assert lora["lora_name"][0] == ["ldm_style.safetensors", "style.safetensors"]
    assert lora["strength_model"] == ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01, "tooltip": lora["strength_model"][1]["tooltip"]}]
    assert info["LoraLoader"]["output"] == ["MODEL", "CLIP"]
    assert info["LoraLoaderModelOnly"]["output"] == ["MODEL"] and info["LoraLoaderModelOnly"]["display_name"] == "LoraLoaderModelOnly"
    skip = info["CLIPSetLastLayer"]["input"]["required"]["stop_at_clip_layer"]
    assert skip == ["INT", {"default": -1, "min": -24, "max": -1, "step": 1}]
    unet = info["UNETLoader"]
    assert unet["input"]["required"]["weight_dtype"][0] == ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
    assert unet["input"]["required"]["unet_name"][0] == ["micro_unet.safetensors"]
    assert unet["category"] == "advanced/loaders" and unet["display_name"] == "Load Diffusion Model"
    assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["micro_vae.safetensors"]


def test_checkpoint_loader_gives_model_clip_vae_shared_across_prompts(engine: Engine) -> None:
    first = run(engine, {"1": CKPT, "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2]}}})
    assert first["arch"] == "sd15" and first["skip"] == -1 and first["encoders"] == 1 and first["vae"] == "AutoencoderKL"
    assert first["embedding_dirs"] and first["embedding_dirs"][0].endswith("embeddings")
    # a different prompt (different output node inputs) loads nothing new: same module objects
    second = run(engine, {"1": CKPT, "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0], "vae": ["1", 2]}}})
    assert second["object"] == first["object"] and second["vae_object"] == first["vae_object"]


def test_sdxl_checkpoint_in_a_subfolder(engine: Engine) -> None:
    info = run(engine, {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "xl/micro_sdxl.safetensors"}},
                        "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0], "clip": ["1", 1]}}})
    assert info["arch"] == "sdxl" and info["encoders"] == 2


@pytest.mark.parametrize("name", ["missing.safetensors", "../models/checkpoints/micro.safetensors", "/etc/passwd"])
def test_unknown_or_escaping_checkpoint_is_a_validation_error_listing_choices(engine: Engine, name: str) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        engine.validate({"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}},
                         "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0]}}})
    error = info.value.body["node_errors"]["1"]["errors"][0]
    assert error["type"] == "value_not_in_list"
    assert "micro.safetensors" in error["details"]


def test_corrupt_checkpoint_fails_clearly_and_the_next_prompt_succeeds(engine: Engine) -> None:
    result = engine.run({"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "broken.safetensors"}},
                         "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0]}}})
    assert result.status == "error"
    text = str(result.error)
    assert "broken.safetensors" in text and "truncated" in text
    assert run(engine, {"1": CKPT, "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0]}}})["arch"] == "sd15"


@pytest.mark.parametrize("lora_name", ["style.safetensors", "ldm_style.safetensors"])
def test_lora_loader_patches_model_and_clip(engine: Engine, lora_name: str) -> None:
    plain = run(engine, {"1": CKPT, "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0]}}})
    prompt = {
        "1": CKPT,
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": lora_name,
                                                     "strength_model": 1.5, "strength_clip": 0.5}},
        "3": {"class_type": "InspectModels", "inputs": {"model": ["2", 0], "clip": ["2", 1]}},
    }
    patched = run(engine, prompt)
    assert patched["patches"] == 1 and patched["clip_patches"] == 1
    assert patched["out"] != plain["out"] and lora_name in patched["identity"]
    again = run(engine, {"1": CKPT, "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0], "vae": ["1", 2]}}})
    assert again["out"] == plain["out"]  # weights restored after the patched run


def test_lora_model_only_and_zero_strength(engine: Engine) -> None:
    only = run(engine, {"1": CKPT,
                        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "style.safetensors", "strength_model": -1.0}},
                        "3": {"class_type": "InspectModels", "inputs": {"model": ["2", 0]}}})
    assert only["patches"] == 1
    zero = run(engine, {"1": CKPT,
                        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": "style.safetensors",
                                                                     "strength_model": 0.0, "strength_clip": 0.0}},
                        "3": {"class_type": "InspectModels", "inputs": {"model": ["2", 0], "clip": ["2", 1]}}})
    assert zero["patches"] == 0 and zero["clip_patches"] == 0


def test_clip_set_last_layer_and_its_range(engine: Engine) -> None:
    info = run(engine, {"1": CKPT, "2": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["1", 1], "stop_at_clip_layer": -2}},
                        "3": {"class_type": "InspectModels", "inputs": {"clip": ["2", 0]}}})
    assert info["skip"] == -2
    with pytest.raises(WorkflowInvalid) as error:
        engine.validate({"1": CKPT, "2": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["1", 1], "stop_at_clip_layer": 0}},
                         "3": {"class_type": "InspectModels", "inputs": {"clip": ["2", 0]}}})
    assert error.value.body["node_errors"]["2"]["errors"][0]["type"] == "value_bigger_than_max"


def test_vae_loader(engine: Engine) -> None:
    info = run(engine, {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "micro_vae.safetensors"}},
                        "2": {"class_type": "InspectModels", "inputs": {"vae": ["1", 0]}}})
    assert info["vae"] == "AutoencoderKL"


@pytest.mark.parametrize("weight_dtype", ["default", "fp8_e4m3fn"])
def test_unet_loader_loads_a_diffusion_model_only_file(engine: Engine, weight_dtype: str) -> None:
    info = run(engine, {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "micro_unet.safetensors", "weight_dtype": weight_dtype}},
                        "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0]}}})
    assert info["arch"] == "sd15"
    assert ("float8" in info["weight_dtype"]) == (weight_dtype != "default")
    plain = run(engine, {"1": CKPT, "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0]}}})
    if weight_dtype == "default":
        assert info["out"] == plain["out"]  # same UNet weights as the checkpoint's
    else:
        a, b = torch.tensor(info["out_values"]), torch.tensor(plain["out_values"])
        assert not torch.equal(a, b)  # fp8 storage: close, not equal
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.95


def test_diffusers_loader_reads_a_pipeline_folder(engine: Engine) -> None:
    assert engine.object_info()["DiffusersLoader"]["input"]["required"]["model_path"][0] == ["micro_pipe"]
    info = run(engine, {"1": {"class_type": "DiffusersLoader", "inputs": {"model_path": "micro_pipe"}},
                        "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2]}}})
    plain = run(engine, {"1": CKPT, "2": {"class_type": "InspectModels", "inputs": {"model": ["1", 0]}}})
    assert info["arch"] == "sd15" and info["encoders"] == 1
    assert info["out"] == pytest.approx(plain["out"], rel=1e-5)
