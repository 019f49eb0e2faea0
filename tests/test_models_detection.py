"""Architecture detection from tensor names and shapes (synthetic key sets of the real architectures)."""

from __future__ import annotations

import pytest

from graphengine.models.detection import UnsupportedModel, detect, unet_diffusers_config
from graphengine.models.ldm_layout import arch_spec, checkpoint_layout, unet_layout


def shapes_of(arch: str) -> dict[str, tuple[int, ...]]:
    return checkpoint_layout(arch_spec(arch))


class FakeTensor:
    def __init__(self, std: float):
        self._std = std

    def float(self) -> FakeTensor:
        return self

    def std(self, unbiased: bool = False) -> float:
        return self._std


def test_sd15_detected_with_sd1_unet_config() -> None:
    detected = detect(shapes_of("sd15"))
    assert detected.arch == "sd15" and detected.prediction == "eps"
    config = unet_diffusers_config(detected)
    assert config["block_out_channels"] == [320, 640, 1280, 1280]
    assert config["down_block_types"] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert config["attention_head_dim"] == 8 and config["cross_attention_dim"] == 768
    assert config["use_linear_projection"] is False and "addition_embed_type" not in config
    assert detected.text_encoders[0].layers == 12 and detected.text_encoders[0].width == 768
    assert detected.vae == {"in_channels": 3, "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "z_channels": 4}


def test_sdxl_base_detected_with_two_encoders_and_text_time_embedding() -> None:
    detected = detect(shapes_of("sdxl"))
    assert detected.arch == "sdxl"
    config = unet_diffusers_config(detected)
    assert config["attention_head_dim"] == [5, 10, 20]
    assert config["transformer_layers_per_block"] == [1, 2, 10]
    assert config["addition_embed_type"] == "text_time" and config["projection_class_embeddings_input_dim"] == 2816
    assert config["cross_attention_dim"] == 2048
    roles = [(e.role.role, e.layers, e.width, e.projection) for e in detected.text_encoders]
    assert roles == [("clip_l", 12, 768, None), ("clip_g", 32, 1280, 1280)]
    assert detected.family.latent_format.scale_factor == 0.13025


def test_sdxl_refiner_detected_from_its_single_open_clip_encoder() -> None:
    spec = arch_spec("sdxl")
    spec["unet"].update(model_channels=384, channel_mult=[1, 2, 4, 4], transformer_depth=[0, 4, 4, 0],
                        transformer_depth_middle=4, context_dim=1280, adm_in_channels=2560)
    encoder = dict(spec["text_encoders"][1], prefix="conditioner.embedders.0.model.")
    spec["text_encoders"] = [encoder]
    detected = detect(checkpoint_layout(spec))
    assert detected.arch == "sdxl_refiner"
    config = unet_diffusers_config(detected)
    assert config["transformer_layers_per_block"] == 4
    assert config["attention_head_dim"] == [6, 12, 24, 24]
    assert config["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]


def test_sd2_is_eps_unless_the_v_prediction_rule_says_otherwise() -> None:
    shapes = shapes_of("sd21")
    probe = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    assert probe in shapes
    base = detect(shapes, {}, lambda name: FakeTensor(0.05))
    assert base.arch == "sd2" and base.prediction == "eps"
    v = detect(shapes, {}, lambda name: FakeTensor(0.2))
    assert v.prediction == "v_prediction" and any("std" in note for note in v.notes)
    assert unet_diffusers_config(v)["upcast_attention"] is True
    assert unet_diffusers_config(v)["attention_head_dim"] == [5, 10, 20, 20]


def test_explicit_markers_decide_prediction() -> None:
    shapes = shapes_of("sd15")
    assert detect(shapes, {"modelspec.prediction_type": "v"}).prediction == "v_prediction"
    assert detect({**shapes, "v_pred": ()}).prediction == "v_prediction"
    assert detect(shapes_of("sd21"), {"graphengine.prediction": "eps"}, lambda n: FakeTensor(1.0)).prediction == "eps"


def test_unet_only_files_are_recognised_by_width() -> None:
    bare = dict(unet_layout(arch_spec("sdxl")["unet"]))
    assert detect(bare, require=("unet",)).arch == "sdxl"
    bare15 = dict(unet_layout(arch_spec("sd15")["unet"]))
    assert detect(bare15, require=("unet",)).arch == "sd15"


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"model.diffusion_model.joint_blocks.0.x.weight": (1,)}, "Stable Diffusion 3"),
        ({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": (1,)}, "Flux"),
        ({"some.other.weight": (3, 3)}, "no Stable Diffusion UNet"),
    ],
)
def test_foreign_architectures_are_named(shapes: dict, message: str) -> None:
    with pytest.raises(UnsupportedModel, match=message):
        detect(shapes)


def test_inpainting_unet_and_mismatched_text_encoder_are_refused() -> None:
    shapes = shapes_of("sd15")
    inpaint = dict(shapes)
    inpaint["model.diffusion_model.input_blocks.0.0.weight"] = (320, 9, 3, 3)
    with pytest.raises(UnsupportedModel, match="9 input channels"):
        detect(inpaint)
    mixed = {k: v for k, v in shapes.items() if not k.startswith("cond_stage_model.")}
    mixed.update({k: v for k, v in shapes_of("sd21").items() if k.startswith("cond_stage_model.")})
    with pytest.raises(UnsupportedModel, match="768-wide"):
        detect(mixed)
    no_vae = {k: v for k, v in shapes.items() if not k.startswith("first_stage_model.")}
    with pytest.raises(UnsupportedModel, match="no VAE"):
        detect(no_vae)
