"""nodes/image.py: LoadImage, LoadImageMask, ImageScale, ImageScaleBy, ImageInvert, ImageBatch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from images_context import ImagesContext, make_env
from PIL import Image as PILImage

from graphengine.environment import Limits
from graphengine.errors import NodeInputError
from graphengine.files import ImageTooLarge
from graphengine.node import object_info
from nodes.image import ImageBatch, ImageInvert, ImageScale, ImageScaleBy, LoadImage, LoadImageMask, pack
from nodes.sockets import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(tmp_path: Path):
    return make_env(tmp_path / "data")


def _gradient(width: int, height: int, mode: str = "RGB") -> PILImage.Image:
    rng = np.random.default_rng(width * 1000 + height)
    channels = len(mode)
    return PILImage.fromarray(rng.integers(0, 256, (height, width, channels), dtype=np.uint8), mode=mode)


def test_pack_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import nodes.image, nodes.latent, nodes.output, nodes.image_base64, graphengine.files; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_pack_lists_the_nodes() -> None:
    assert [n.class_type for n in pack().nodes] == [
        "LoadImage", "LoadImageMask", "ImageScale", "ImageScaleBy", "ImageInvert", "ImageBatch"]


# --- LoadImage ------------------------------------------------------------------------------------------


def test_load_image_rgb_exact_values_and_empty_mask(env) -> None:
    source = _gradient(12, 8)
    source.save(env.paths.input_dir / "photo.png")
    out = LoadImage(image="photo.png").run(ImagesContext(env))
    assert out.image.pixels.shape == (1, 8, 12, 3) and out.image.pixels.dtype == torch.float32
    expected = torch.from_numpy(np.asarray(source, dtype=np.float32) / 255.0)
    assert torch.equal(out.image.pixels[0], expected)
    assert out.mask.values.shape == (1, 64, 64) and not out.mask.values.any()


def test_load_image_alpha_becomes_inverted_mask(env) -> None:
    source = _gradient(5, 4, "RGBA")
    source.save(env.paths.input_dir / "cut.png")
    out = LoadImage(image="cut.png").run(ImagesContext(env))
    alpha = np.asarray(source, dtype=np.float32)[..., 3] / 255.0
    assert out.mask.values.shape == (1, 4, 5)
    assert torch.allclose(out.mask.values[0], 1.0 - torch.from_numpy(alpha))
    assert out.image.pixels.shape == (1, 4, 5, 3)


def test_load_image_from_subfolder_and_annotated_output(env) -> None:
    (env.paths.input_dir / "talemate").mkdir()
    _gradient(4, 4).save(env.paths.input_dir / "talemate" / "ref.png")
    _gradient(6, 2).save(env.paths.output_dir / "done.png")
    ctx = ImagesContext(env)
    assert LoadImage(image="talemate/ref.png").run(ctx).image.pixels.shape == (1, 4, 4, 3)
    assert LoadImage(image="done.png [output]").run(ctx).image.pixels.shape == (1, 2, 6, 3)
    assert "talemate/ref.png" in object_info(LoadImage, env)["input"]["required"]["image"][0]
    assert object_info(LoadImage, env)["input"]["required"]["image"][1]["image_upload"] is True


@pytest.mark.parametrize("name", ["missing.png", "../data/input/x.png", "/etc/passwd", "%2e%2e/x.png", "", "a\x00.png"])
def test_load_image_validation_names_the_problem(env, name: str) -> None:
    problem = LoadImage.validate_inputs({"image": name}, env)
    assert problem and problem.startswith("Invalid image file")
    with pytest.raises(NodeInputError):
        LoadImage(image=name).run(ImagesContext(env))


def test_load_image_validation_passes_for_existing_unlisted_file(env) -> None:
    (env.paths.input_dir / "notes.txt").write_text("not listed")
    assert LoadImage.validates() == {"image"}
    assert LoadImage.validate_inputs({"image": "notes.txt"}, env) is None


def test_load_image_fingerprint_follows_file_content(env) -> None:
    path = env.paths.input_dir / "a.png"
    _gradient(4, 4).save(path)
    first = LoadImage.fingerprint({"image": "a.png"}, env)
    assert first == LoadImage.fingerprint({"image": "a.png"}, env)
    _gradient(5, 4).save(path)
    assert LoadImage.fingerprint({"image": "a.png"}, env) != first


def test_load_image_animation_is_a_batch(env) -> None:
    frames = [PILImage.new("RGB", (6, 4), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(env.paths.input_dir / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    out = LoadImage(image="anim.gif").run(ImagesContext(env))
    assert out.image.pixels.shape == (3, 4, 6, 3)
    assert out.image.pixels[1, 0, 0].tolist() == [0.0, 1.0, 0.0]


def test_load_image_over_pixel_cap(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", limits=Limits(max_image_pixels=100))
    _gradient(20, 20).save(env.paths.input_dir / "big.png")
    with pytest.raises(ImageTooLarge):
        LoadImage(image="big.png").run(ImagesContext(env))


def test_load_image_non_image_file(env) -> None:
    (env.paths.input_dir / "fake.png").write_text("<html>not an image</html>")
    with pytest.raises(NodeInputError) as caught:
        LoadImage(image="fake.png").run(ImagesContext(env))
    assert "not an image" in str(caught.value)


def test_load_image_applies_exif_orientation(env) -> None:
    source = _gradient(6, 3)
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    source.save(env.paths.input_dir / "rot.jpg", exif=exif.tobytes())
    assert LoadImage(image="rot.jpg").run(ImagesContext(env)).image.pixels.shape == (1, 6, 3, 3)


# --- LoadImageMask ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channel", "index", "inverted"), [("alpha", 3, True), ("red", 0, False),
                                                              ("green", 1, False), ("blue", 2, False)])
def test_load_image_mask_channels(env, channel: str, index: int, inverted: bool) -> None:
    source = _gradient(5, 3, "RGBA")
    source.save(env.paths.input_dir / "m.png")
    mask = LoadImageMask(image="m.png", channel=channel).run(ImagesContext(env)).mask.values
    expected = torch.from_numpy(np.asarray(source, dtype=np.float32)[..., index] / 255.0)
    assert mask.shape == (1, 3, 5)
    assert torch.allclose(mask[0], 1.0 - expected if inverted else expected)


def test_load_image_mask_alpha_of_opaque_image_is_zero(env) -> None:
    _gradient(4, 4).save(env.paths.input_dir / "rgb.png")
    mask = LoadImageMask(image="rgb.png", channel="alpha").run(ImagesContext(env)).mask.values
    assert mask.shape == (1, 4, 4) and not mask.any()


# --- resizing and friends -----------------------------------------------------------------------------------


def _pixels(batch: int, height: int, width: int) -> Image:
    generator = torch.Generator().manual_seed(batch * 100 + height + width)
    return Image(torch.rand((batch, height, width, 3), generator=generator))


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_image_scale_methods(env, method: str) -> None:
    out = ImageScale(image=_pixels(2, 8, 16), upscale_method=method, width=32, height=12, crop="disabled")
    pixels = out.run(ImagesContext(env)).image.pixels
    assert pixels.shape == (2, 12, 32, 3)
    assert pixels.dtype == torch.float32


def test_image_scale_nearest_exact_doubles_pixels(env) -> None:
    source = _pixels(1, 2, 2)
    pixels = ImageScale(image=source, upscale_method="nearest-exact", width=4, height=4,
                        crop="disabled").run(ImagesContext(env)).image.pixels
    assert torch.equal(pixels[0, ::2, ::2], source.pixels[0])
    assert torch.equal(pixels[0, 1::2, 1::2], source.pixels[0])


def test_image_scale_zero_keeps_aspect_and_both_zero_passes_through(env) -> None:
    source = _pixels(1, 10, 20)
    ctx = ImagesContext(env)
    assert ImageScale(image=source, upscale_method="bilinear", width=0, height=5,
                      crop="disabled").run(ctx).image.pixels.shape == (1, 5, 10, 3)
    assert ImageScale(image=source, upscale_method="bilinear", width=40, height=0,
                      crop="disabled").run(ctx).image.pixels.shape == (1, 20, 40, 3)
    assert ImageScale(image=source, upscale_method="bilinear", width=0, height=0,
                      crop="disabled").run(ctx).image is source


def test_image_scale_center_crop_keeps_the_middle(env) -> None:
    pixels = torch.zeros((1, 4, 8, 3))
    pixels[:, :, 2:6] = 1.0  # a white centre square in a black 2:1 image
    out = ImageScale(image=Image(pixels), upscale_method="nearest-exact", width=4, height=4, crop="center")
    assert torch.equal(out.run(ImagesContext(env)).image.pixels, torch.ones((1, 4, 4, 3)))


def test_image_scale_refuses_results_over_pixel_cap(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", limits=Limits(max_image_pixels=1000))
    with pytest.raises(NodeInputError):
        ImageScale(image=_pixels(1, 4, 4), upscale_method="bilinear", width=100, height=100,
                   crop="disabled").run(ImagesContext(env))


def test_image_scale_by(env) -> None:
    out = ImageScaleBy(image=_pixels(1, 10, 20), upscale_method="bicubic", scale_by=1.5)
    assert out.run(ImagesContext(env)).image.pixels.shape == (1, 15, 30, 3)
    tiny = ImageScaleBy(image=_pixels(1, 10, 20), upscale_method="area", scale_by=0.01)
    assert tiny.run(ImagesContext(env)).image.pixels.shape == (1, 1, 1, 3)  # never zero-sized


def test_image_invert(env) -> None:
    source = _pixels(2, 3, 3)
    out = ImageInvert(image=source).run(ImagesContext(env)).image.pixels
    assert torch.allclose(out, 1.0 - source.pixels)


def test_image_batch_same_size(env) -> None:
    first, second = _pixels(1, 4, 4), _pixels(2, 4, 4)
    out = ImageBatch(image1=first, image2=second).run(ImagesContext(env)).image.pixels
    assert out.shape == (3, 4, 4, 3)
    assert torch.equal(out[0], first.pixels[0]) and torch.equal(out[1:], second.pixels)


def test_image_batch_resizes_second_to_first(env) -> None:
    first = _pixels(1, 4, 6)
    second = Image(torch.full((1, 8, 8, 3), 0.25))
    out = ImageBatch(image1=first, image2=second).run(ImagesContext(env)).image.pixels
    assert out.shape == (2, 4, 6, 3)
    assert torch.allclose(out[1], torch.full((4, 6, 3), 0.25))
