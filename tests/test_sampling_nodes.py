"""KSampler / KSamplerAdvanced as nodes: /object_info, validation, and whole prompts on the micro model."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphengine.engine import Engine, build_environment
from graphengine.environment import PreviewSettings
from graphengine.errors import WorkflowInvalid
from graphengine.events import ListSink, PreviewImage, Progress
from nodes.sampling import KSampler, KSamplerAdvanced, pack
from nodes.sampling.names import IMPLEMENTED_SAMPLERS, SAMPLER_NAMES, SCHEDULER_NAMES

PACKS = (
    "nodes.utility", "nodes.loaders", "nodes.image", "nodes.latent", "nodes.output",
    "nodes.conditioning", "nodes.vae", "nodes.sampling",
)
CHECKPOINT = "micro.safetensors"


def test_pack_declares_both_nodes():
    assert [n.class_type for n in pack().nodes] == ["KSampler", "KSamplerAdvanced"]


def test_object_info_matches_comfyui(tmp_path: Path):
    from graphengine.node import object_info

    env = build_environment(tmp_path / "data", tmp_path / "models", models=None)
    info = object_info(KSampler, env)
    required = info["input"]["required"]
    assert info["input_order"]["required"] == [
        "model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image", "denoise",
    ]
    assert required["sampler_name"][0] == list(SAMPLER_NAMES) and len(SAMPLER_NAMES) == 42
    assert required["scheduler"][0] == list(SCHEDULER_NAMES)
    assert {k: required["seed"][1][k] for k in ("default", "min", "max", "control_after_generate")} == {
        "default": 0, "min": 0, "max": 18446744073709551615, "control_after_generate": True,
    }
    assert {k: required["cfg"][1][k] for k in ("default", "min", "max", "step", "round")} == {
        "default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
    }
    assert info["output"] == ["LATENT"] and info["category"] == "sampling" and info["display_name"] == "KSampler"
    advanced = object_info(KSamplerAdvanced, env)
    assert advanced["display_name"] == "KSampler (Advanced)"
    assert advanced["input"]["required"]["add_noise"] == [["enable", "disable"]]
    assert advanced["input"]["required"]["return_with_leftover_noise"] == [["disable", "enable"]]
    assert advanced["input"]["required"]["end_at_step"] == ["INT", {"default": 10000, "min": 0, "max": 10000}]


def test_validate_inputs_accepts_every_listed_sampler_and_names_unknown_ones():
    for name in SAMPLER_NAMES:
        assert name in IMPLEMENTED_SAMPLERS
        assert KSampler.validate_inputs({"sampler_name": name, "scheduler": "normal"}, None) is None
    assert KSamplerAdvanced.validate_inputs({"sampler_name": "euler", "scheduler": "karras"}, None) is None
    message = KSampler.validate_inputs({"sampler_name": "exp_heun_2_x0", "scheduler": "normal"}, None)
    assert message == "unknown sampler 'exp_heun_2_x0'"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    from graphengine.models.checkpoint_maker import make_checkpoint

    root = tmp_path_factory.mktemp("sampling-engine")
    make_checkpoint(root / "models" / "checkpoints" / CHECKPOINT, "micro", seed=1, dtype="fp32")
    env = build_environment(root / "data", root / "models", preview=PreviewSettings(method="latent2rgb"))
    return Engine(packs=list(PACKS), cache="none", env=env)


def txt2img(seed: int = 1, steps: int = 3, sampler: str = "euler", scheduler: str = "normal", advanced: bool = False) -> dict:
    sampler_inputs = {
        "model": ["4", 0], "steps": steps, "cfg": 6.0, "sampler_name": sampler, "scheduler": scheduler,
        "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
    }
    if advanced:
        sampler_node = {"class_type": "KSamplerAdvanced", "inputs": {
            **sampler_inputs, "add_noise": "enable", "noise_seed": seed, "start_at_step": 0,
            "end_at_step": 10000, "return_with_leftover_noise": "disable",
        }}
    else:
        sampler_node = {"class_type": "KSampler", "inputs": {**sampler_inputs, "seed": seed, "denoise": 1.0}}
    return {
        "3": sampler_node,
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"s{seed}"}},
    }


def _image_bytes(engine: Engine, run) -> bytes:
    from PIL import Image

    image = run.outputs["9"]["images"][0]
    path = engine.env.paths.output_dir / image["subfolder"] / image["filename"]
    with Image.open(path) as img:
        return img.convert("RGB").tobytes()


@pytest.mark.slow
def test_txt2img_prompt_runs_with_a_progress_event_per_step_and_previews(engine: Engine):
    sink = ListSink()
    run = engine.run(txt2img(seed=1, steps=3), sink=sink)
    assert run.status == "success", run.error
    progress = [(e.value, e.max) for e in sink.of_type(Progress) if e.node == "3"]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    previews = sink.of_type(PreviewImage)
    assert len(previews) == 3 and previews[0].image.size == (8, 8)

    again = engine.run(txt2img(seed=1, steps=3))
    other = engine.run(txt2img(seed=2, steps=3))
    assert _image_bytes(engine, run) == _image_bytes(engine, again)
    assert _image_bytes(engine, run) != _image_bytes(engine, other)
    advanced = engine.run(txt2img(seed=1, steps=3, advanced=True))
    assert _image_bytes(engine, advanced) == _image_bytes(engine, run)


def test_every_listed_sampler_and_scheduler_passes_validation(engine: Engine):
    for name in SAMPLER_NAMES:
        engine.validate(txt2img(sampler=name))
    for name in SCHEDULER_NAMES:
        engine.validate(txt2img(scheduler=name, advanced=True))


def test_unknown_sampler_is_value_not_in_list(engine: Engine):
    for name in ("no_such_sampler", "exp_heun_2_x0"):  # the latter only exists in newer ComfyUI
        with pytest.raises(WorkflowInvalid) as caught:
            engine.validate(txt2img(sampler=name))
        assert caught.value.body["node_errors"]["3"]["errors"][0]["type"] == "value_not_in_list"
