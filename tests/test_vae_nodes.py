"""VAEDecode, VAEEncode and VAEEncodeForInpaint on a tiny random-weight diffusers AutoencoderKL
(downscale 8, like SD's): ComfyUI's value conventions, cropping, mask growth, tiling, bad input."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from graphengine.environment import DataPaths, Environment
from graphengine.errors import NodeInputError
from graphengine.node import object_info
from nodes import _vae_ops
from nodes.sockets import Image, LatentFormat, Latent, Mask, Vae
from nodes.vae import VAEDecode, VAEEncode, VAEEncodeForInpaint, pack


class VaeRuntime:
    """The smallest ModelRuntime: the autoencoder is already on its device."""

    @contextlib.contextmanager
    def activate(self, value: Any) -> Iterator[Any]:
        yield value.autoencoder


class Context:
    def __init__(self, root: Path):
        self.node_id = "7"
        self.prompt_id = "test"
        self.env = Environment(paths=DataPaths.under(root))
        self.prompt: dict[str, Any] = {}
        self.extra_pnginfo = None
        self.interrupt_checks = 0

    def progress(self, value: int, total: int, preview: Any = None) -> None:
        pass

    def check_interrupted(self) -> None:
        self.interrupt_checks += 1


def tiny_autoencoder(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="module")
def autoencoder() -> AutoencoderKL:
    return tiny_autoencoder()


@pytest.fixture
def vae(autoencoder) -> Vae:
    return Vae(autoencoder=autoencoder, latent_format=LatentFormat(), runtime=VaeRuntime())


def raw_encode(autoencoder: AutoencoderKL, pixels_bhwc: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return autoencoder.encode(pixels_bhwc.movedim(-1, 1) * 2 - 1).latent_dist.mean


def gradient_image(batch: int, height: int, width: int, channels: int = 3) -> torch.Tensor:
    torch.manual_seed(height * 1000 + width)
    return torch.rand(batch, height, width, channels)


# --- decode ------------------------------------------------------------------------------------------


def test_decode_returns_bhwc_images_in_unit_range(vae, autoencoder, tmp_path) -> None:
    latents = torch.randn(2, 4, 4, 6) * 3
    ctx = Context(tmp_path)
    image = VAEDecode(samples=Latent(samples=latents), vae=vae).run(ctx).image.pixels
    assert image.shape == (2, 32, 48, 3) and image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    with torch.no_grad():
        expected = ((autoencoder.decode(latents).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
    torch.testing.assert_close(image, expected)  # raw latents: no scale factor applied
    image.mul_(255)  # an ordinary tensor: later nodes may work in place
    assert ctx.interrupt_checks >= 1


def test_decode_refuses_latents_of_another_family(vae, tmp_path) -> None:
    with pytest.raises(NodeInputError, match=r"VAE Decode: latent has 16 channels .* 4-channel"):
        VAEDecode(samples=Latent(samples=torch.zeros(1, 16, 8, 8)), vae=vae).run(Context(tmp_path))
    with pytest.raises(NodeInputError, match="VAE Decode: latent must be"):
        VAEDecode(samples=Latent(samples=torch.zeros(4, 8, 8)), vae=vae).run(Context(tmp_path))


def test_tiled_blending_reassembles_a_pointwise_map_exactly() -> None:
    x = torch.randn(2, 4, 21, 30)

    def upsample(part: torch.Tensor) -> torch.Tensor:
        return F.interpolate(part, scale_factor=8, mode="nearest") * 2 + 1

    whole = upsample(x)
    pieces = _vae_ops.tiled(upsample, x, tile=8, overlap=2, scale=8)
    torch.testing.assert_close(pieces, whole)
    down = _vae_ops.tiled(lambda p: p[:, :, ::8, ::8], whole, tile=64, overlap=16, scale=1 / 8)
    torch.testing.assert_close(down, upsample(x)[:, :, ::8, ::8])


def test_tile_option_decodes_to_the_same_size(autoencoder) -> None:
    latents = torch.randn(1, 4, 12, 10)
    tiled = _vae_ops.decode(autoencoder, latents, tile=6)
    assert tiled.shape == (1, 96, 80, 3)
    assert torch.isfinite(tiled).all() and tiled.min() >= 0 and tiled.max() <= 1


class ShortOfMemory(AutoencoderKL):
    """A real autoencoder whose decoder runs out of memory above a latent size (as a small GPU would)."""

    limit = 16

    def decode(self, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if z.shape[-1] > self.limit or z.shape[-2] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().decode(z, *args, **kwargs)


def test_out_of_memory_falls_back_to_tiled_decoding(caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    torch.manual_seed(0)
    small = ShortOfMemory.from_config(tiny_autoencoder().config).eval()
    vae = Vae(autoencoder=small, latent_format=LatentFormat(), runtime=VaeRuntime())
    latents = torch.randn(1, 4, 20, 12)
    with caplog.at_level(logging.WARNING):
        image = VAEDecode(samples=Latent(samples=latents), vae=vae).run(Context(tmp_path)).image.pixels
    assert image.shape == (1, 160, 96, 3)
    assert "retrying tiled" in caplog.text


def test_out_of_memory_at_the_smallest_tile_is_reported(tmp_path) -> None:
    small = ShortOfMemory.from_config(tiny_autoencoder().config).eval()
    small.limit = 2
    with pytest.raises(torch.OutOfMemoryError, match="even in tiles of 16"):
        _vae_ops.decode(small, torch.randn(1, 4, 20, 20))


def test_half_precision_overflow_is_retried_in_float32(caplog: pytest.LogCaptureFixture) -> None:
    autoencoder = tiny_autoencoder().half()
    latents = torch.randn(1, 4, 4, 4) * 1e6  # beyond float16's range
    with caplog.at_level(logging.WARNING):
        image = _vae_ops.decode(autoencoder, latents)
    assert torch.isfinite(image).all() and image.shape == (1, 32, 32, 3)
    assert "retrying in float32" in caplog.text
    assert next(autoencoder.parameters()).dtype == torch.float16  # given back as it was lent


def test_non_finite_output_in_float32_is_an_error(vae, tmp_path) -> None:
    latents = torch.full((1, 4, 4, 4), float("nan"))
    with pytest.raises(NodeInputError, match="VAE Decode: .*NaN"):
        VAEDecode(samples=Latent(samples=latents), vae=vae).run(Context(tmp_path))


# --- encode ------------------------------------------------------------------------------------------


def test_encode_returns_the_raw_posterior_mode(vae, autoencoder, tmp_path) -> None:
    pixels = gradient_image(2, 32, 40)
    latent = VAEEncode(pixels=Image(pixels=pixels), vae=vae).run(Context(tmp_path)).latent
    assert latent.samples.shape == (2, 4, 4, 5) and latent.samples.dtype == torch.float32
    assert latent.noise_mask is None
    torch.testing.assert_close(latent.samples, raw_encode(autoencoder, pixels))
    assert not latent.samples.is_inference()
    again = VAEEncode(pixels=Image(pixels=pixels), vae=vae).run(Context(tmp_path)).latent
    assert torch.equal(again.samples, latent.samples)  # deterministic (no sampling)


def test_encode_centre_crops_to_multiples_of_8_and_ignores_alpha(vae, autoencoder, tmp_path) -> None:
    pixels = gradient_image(1, 37, 45, channels=4)
    latent = VAEEncode(pixels=Image(pixels=pixels), vae=vae).run(Context(tmp_path)).latent.samples
    assert latent.shape == (1, 4, 4, 5)
    # 37 → 32 rows starting at (37 % 8) // 2 = 2; 45 → 40 columns starting at 2
    torch.testing.assert_close(latent, raw_encode(autoencoder, pixels[:, 2:34, 2:42, :3]))


def test_round_trip_keeps_shape_and_range(vae, tmp_path) -> None:
    pixels = gradient_image(3, 24, 16)
    latent = VAEEncode(pixels=Image(pixels=pixels), vae=vae).run(Context(tmp_path)).latent
    image = VAEDecode(samples=latent, vae=vae).run(Context(tmp_path)).image.pixels
    assert image.shape == pixels.shape
    assert 0 <= float(image.min()) and float(image.max()) <= 1


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (torch.zeros(8, 8), "must be \\[batch, height, width, channels\\]"),
        (torch.zeros(1, 16, 16, 1), "1 channel"),
        (torch.zeros(1, 4, 64, 3), "at least 8×8"),
        (torch.zeros(0, 16, 16, 3), "empty"),
    ],
)
def test_encode_bad_images_name_the_node_and_cause(vae, tmp_path, pixels: torch.Tensor, message: str) -> None:
    with pytest.raises(NodeInputError, match=f"VAE Encode: .*{message}"):
        VAEEncode(pixels=Image(pixels=pixels), vae=vae).run(Context(tmp_path))


# --- inpaint -----------------------------------------------------------------------------------------


def test_inpaint_greys_masked_pixels_and_grows_the_noise_mask(vae, autoencoder, tmp_path) -> None:
    pixels = gradient_image(1, 16, 16)
    mask = torch.zeros(1, 16, 16)
    mask[0, 5, 5] = 1.0
    latent = VAEEncodeForInpaint(pixels=Image(pixels=pixels), vae=vae, mask=Mask(values=mask)).run(Context(tmp_path)).latent

    expected_mask = torch.zeros(1, 1, 16, 16)
    expected_mask[0, 0, 3:9, 3:9] = 1.0  # a 6×6 box: rows/columns 5-2 .. 5+3
    assert latent.noise_mask is not None
    torch.testing.assert_close(latent.noise_mask, expected_mask)

    greyed = pixels.clone()
    greyed[0, 5, 5] = 0.5
    torch.testing.assert_close(latent.samples, raw_encode(autoencoder, greyed))


def test_inpaint_without_growth_keeps_the_mask(vae, tmp_path) -> None:
    mask = torch.zeros(1, 16, 16)
    mask[0, 4:8, 2:10] = 1.0
    node = VAEEncodeForInpaint(pixels=Image(pixels=gradient_image(1, 16, 16)), vae=vae, mask=Mask(values=mask), grow_mask_by=0)
    latent = node.run(Context(tmp_path)).latent
    torch.testing.assert_close(latent.noise_mask, mask[:, None])


def test_inpaint_resizes_the_mask_and_crops_with_the_image(vae, autoencoder, tmp_path) -> None:
    pixels = gradient_image(2, 20, 20)
    mask = torch.ones(1, 10, 10)  # half resolution, batch 1 for both images
    node = VAEEncodeForInpaint(pixels=Image(pixels=pixels), vae=vae, mask=Mask(values=mask), grow_mask_by=3)
    latent = node.run(Context(tmp_path)).latent
    assert latent.samples.shape == (2, 4, 2, 2)
    assert latent.noise_mask.shape == (1, 1, 16, 16) and bool((latent.noise_mask == 1).all())
    torch.testing.assert_close(latent.samples, raw_encode(autoencoder, torch.full((2, 16, 16, 3), 0.5)), atol=1e-4, rtol=1e-4)


def test_inpaint_mask_batch_must_match(vae, tmp_path) -> None:
    node = VAEEncodeForInpaint(pixels=Image(pixels=gradient_image(3, 16, 16)), vae=vae, mask=Mask(values=torch.zeros(2, 16, 16)))
    with pytest.raises(NodeInputError, match=r"VAE Encode \(for Inpainting\): mask batch \(2\)"):
        node.run(Context(tmp_path))


def test_object_info_matches_comfyui(tmp_path) -> None:
    env = Environment(paths=DataPaths.under(tmp_path))
    decode = object_info(VAEDecode, env)
    assert decode["input_order"] == {"required": ["samples", "vae"]}
    assert decode["output"] == ["IMAGE"] and decode["category"] == "latent"
    encode = object_info(VAEEncode, env)
    assert encode["input_order"] == {"required": ["pixels", "vae"]} and encode["output"] == ["LATENT"]
    inpaint = object_info(VAEEncodeForInpaint, env)
    assert inpaint["input_order"] == {"required": ["pixels", "vae", "mask", "grow_mask_by"]}
    grow = inpaint["input"]["required"]["grow_mask_by"]
    assert grow[0] == "INT" and {k: grow[1][k] for k in ("default", "min", "max", "step")} == {
        "default": 6, "min": 0, "max": 64, "step": 1
    }
    assert inpaint["category"] == "latent/inpaint" and inpaint["display_name"] == "VAE Encode (for Inpainting)"
    assert [n.class_type for n in pack().nodes] == ["VAEDecode", "VAEEncode", "VAEEncodeForInpaint"]


@pytest.mark.slow
def test_real_checkpoint_vae_round_trip_through_the_model_runtime(tmp_path) -> None:
    from graphengine.models.checkpoint_maker import make_checkpoint
    from graphengine.models.library import ModelLibrary

    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    make_checkpoint(tmp_path / "models" / "checkpoints" / "micro.safetensors", "micro")
    library = ModelLibrary(tmp_path / "models")
    _model, _clip, vae = library.manager.load_checkpoint(library.resolve("checkpoints", "micro.safetensors"))
    pixels = gradient_image(2, 40, 24)
    latent = VAEEncode(pixels=Image(pixels=pixels), vae=vae).run(Context(tmp_path)).latent
    assert latent.samples.shape == (2, vae.latent_format.channels, 5, 3)
    with vae.activate() as autoencoder:
        torch.testing.assert_close(latent.samples, raw_encode(autoencoder, pixels), atol=1e-4, rtol=1e-4)
    image = VAEDecode(samples=latent, vae=vae).run(Context(tmp_path)).image.pixels
    assert image.shape == (2, 40, 24, 3) and 0 <= float(image.min()) and float(image.max()) <= 1


def test_batches_are_split_when_memory_is_short(autoencoder, monkeypatch) -> None:
    latents = torch.randn(3, 4, 4, 4)
    whole = _vae_ops.decode(autoencoder, latents)
    monkeypatch.setattr(_vae_ops, "DECODE_ELEMENTS_PER_CELL", 2**50)  # "one image barely fits"
    calls: list[int] = []
    original = autoencoder.decode

    def counting(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(z.shape[0])
        return original(z, *args, **kwargs)

    monkeypatch.setattr(autoencoder, "decode", counting)
    torch.testing.assert_close(_vae_ops.decode(autoencoder, latents), whole, atol=1e-5, rtol=1e-5)
    assert calls == [1, 1, 1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu(tmp_path) -> None:
    cpu = tiny_autoencoder()
    gpu = tiny_autoencoder().to("cuda", torch.float16)
    latents = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(_vae_ops.decode(gpu, latents), _vae_ops.decode(cpu, latents), atol=2e-2, rtol=0)
    torch.testing.assert_close(_vae_ops.decode(gpu, latents, tile=4), _vae_ops.decode(cpu, latents, tile=4), atol=2e-2, rtol=0)
    pixels = gradient_image(1, 64, 64)
    torch.testing.assert_close(_vae_ops.encode(gpu, pixels), _vae_ops.encode(cpu, pixels), atol=5e-2, rtol=0)
