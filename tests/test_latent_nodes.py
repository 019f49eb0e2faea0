"""nodes/latent.py: EmptyLatentImage, LatentUpscale, LatentUpscaleBy, SetLatentNoiseMask."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from images_context import ImagesContext, make_env

from graphengine.environment import Limits
from graphengine.errors import NodeInputError
from graphengine.node import object_info
from nodes._imaging import bislerp
from nodes.latent import EmptyLatentImage, LatentUpscale, LatentUpscaleBy, SetLatentNoiseMask, pack
from nodes.sockets import Latent, Mask


@pytest.fixture()
def env(tmp_path: Path):
    return make_env(tmp_path / "data")


def _latent(batch: int = 1, height: int = 8, width: int = 8) -> Latent:
    generator = torch.Generator().manual_seed(height * 31 + width)
    return Latent(samples=torch.randn((batch, 4, height, width), generator=generator))


def test_pack_and_object_info(env) -> None:
    assert [n.class_type for n in pack().nodes] == [
        "EmptyLatentImage", "LatentUpscale", "LatentUpscaleBy", "SetLatentNoiseMask"]
    info = object_info(EmptyLatentImage, env)
    assert info["input"]["required"]["width"] == ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8,
                                                           "tooltip": "The width of the latent images in pixels."}]
    assert info["input"]["required"]["batch_size"][1]["max"] == 4096
    assert info["output"] == ["LATENT"] and info["category"] == "latent"
    methods = object_info(LatentUpscale, env)["input"]["required"]["upscale_method"][0]
    assert methods == ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]


def test_empty_latent_image_shape_and_zeros(env) -> None:
    latent = EmptyLatentImage(width=64, height=32, batch_size=3).run(ImagesContext(env)).latent
    assert latent.samples.shape == (3, 4, 4, 8)
    assert latent.samples.dtype == torch.float32 and not latent.samples.any()
    assert latent.noise_mask is None and latent.batch_index is None


@pytest.mark.parametrize(("width", "height"), [(500, 512), (512, 100)])
def test_empty_latent_image_refuses_non_multiples_of_8(env, width: int, height: int) -> None:
    problem = EmptyLatentImage.validate_inputs({"width": width, "height": height, "batch_size": 1}, env)
    assert problem and "multiple of 8" in problem
    with pytest.raises(NodeInputError, match="multiple of 8"):
        EmptyLatentImage(width=width, height=height, batch_size=1).run(ImagesContext(env))


def test_empty_latent_image_linked_values_are_skipped_at_validation(env) -> None:
    assert EmptyLatentImage.validate_inputs({"batch_size": 1}, env) is None


def test_empty_latent_image_caps_pixels(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", limits=Limits(max_image_pixels=64 * 64))
    assert EmptyLatentImage.validate_inputs({"width": 64, "height": 64, "batch_size": 16}, env) is None
    assert "per image" in EmptyLatentImage.validate_inputs({"width": 128, "height": 64, "batch_size": 1}, env)
    assert "per batch" in EmptyLatentImage.validate_inputs({"width": 64, "height": 64, "batch_size": 17}, env)


def test_latent_upscale_to_pixels(env) -> None:
    source = _latent(2, 8, 8)
    out = LatentUpscale(samples=source, upscale_method="bilinear", width=128, height=96, crop="disabled")
    assert out.run(ImagesContext(env)).latent.samples.shape == (2, 4, 12, 16)


def test_latent_upscale_keeps_aspect_minimum_and_passthrough(env) -> None:
    source = _latent(1, 8, 16)  # 128×64 pixels
    ctx = ImagesContext(env)

    def size(width: int, height: int) -> tuple[int, ...]:
        node = LatentUpscale(samples=source, upscale_method="nearest-exact", width=width, height=height, crop="disabled")
        return tuple(node.run(ctx).latent.samples.shape[-2:])

    assert size(0, 128) == (16, 32)
    assert size(512, 0) == (32, 64)
    assert size(8, 8) == (8, 8)  # at least 64 pixels
    assert size(100, 100) == (12, 12)  # rounded down to a multiple of 8
    assert LatentUpscale(samples=source, upscale_method="bilinear", width=0, height=0,
                         crop="disabled").run(ctx).latent is source


def test_latent_upscale_keeps_mask_and_batch_index(env) -> None:
    source = Latent(samples=torch.zeros(2, 4, 8, 8), noise_mask=torch.ones(2, 1, 64, 64), batch_index=(3, 4))
    out = LatentUpscaleBy(samples=source, upscale_method="area", scale_by=2.0).run(ImagesContext(env)).latent
    assert out.samples.shape == (2, 4, 16, 16)
    assert out.noise_mask is source.noise_mask and out.batch_index == (3, 4)


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"])
def test_latent_upscale_by_every_method(env, method: str) -> None:
    out = LatentUpscaleBy(samples=_latent(1, 8, 12), upscale_method=method, scale_by=1.5).run(ImagesContext(env))
    assert out.latent.samples.shape == (1, 4, 12, 18)
    assert torch.isfinite(out.latent.samples).all()


def test_latent_upscale_center_crop(env) -> None:
    samples = torch.zeros(1, 4, 8, 16)
    samples[..., 4:12] = 1.0
    node = LatentUpscale(samples=Latent(samples), upscale_method="nearest-exact", width=64, height=64, crop="center")
    assert torch.equal(node.run(ImagesContext(env)).latent.samples, torch.ones(1, 4, 8, 8))


def test_latent_upscale_refuses_huge_results(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", limits=Limits(max_image_pixels=256 * 256))
    with pytest.raises(NodeInputError):
        LatentUpscaleBy(samples=_latent(1, 8, 8), upscale_method="bilinear", scale_by=8.0).run(ImagesContext(env))


def test_bislerp_identity_and_norm_preservation() -> None:
    samples = _latent(1, 6, 6).samples
    assert torch.allclose(bislerp(samples, 6, 6), samples, atol=1e-5)
    doubled = bislerp(samples, 12, 12)
    # Nearest-neighbour-aligned outputs at exact half-pixel positions interpolate between two vectors:
    # their length lies between the two source lengths (slerp keeps length, a plain lerp shrinks it).
    norms_in = samples.norm(dim=1)
    norms_out = doubled.norm(dim=1)
    assert norms_out.min() >= norms_in.min() - 1e-4 and norms_out.max() <= norms_in.max() + 1e-4
    lerped = torch.nn.functional.interpolate(samples, size=(12, 12), mode="bilinear")
    assert norms_out.mean() > lerped.norm(dim=1).mean()


def test_set_latent_noise_mask(env) -> None:
    source = Latent(samples=torch.zeros(1, 4, 8, 8), batch_index=(0,))
    mask = Mask(torch.rand(1, 64, 64))
    out = SetLatentNoiseMask(samples=source, mask=mask).run(ImagesContext(env)).latent
    assert out.samples is source.samples and out.batch_index == (0,)
    assert out.noise_mask.shape == (1, 1, 64, 64) and torch.equal(out.noise_mask[0, 0], mask.values[0])
    flat = SetLatentNoiseMask(samples=source, mask=Mask(torch.ones(64, 64))).run(ImagesContext(env)).latent
    assert flat.noise_mask.shape == (1, 1, 64, 64)
