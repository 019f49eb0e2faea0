"""Image nodes: load from the input folder, resize, invert, batch (ComfyUI's names and behaviour).

Importing this module does not import torch; the pixel work lives in ``nodes._imaging``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from graphengine.files import IMAGE_EXTENSIONS, PathRejected, confine, decode_image_bytes, file_sha256, list_files
from graphengine.node import Combo, Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Image, Mask

if TYPE_CHECKING:
    from graphengine.environment import Environment

MAX_SIDE = 16384
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROP_METHODS = ("disabled", "center")
MASK_CHANNELS = ("alpha", "red", "green", "blue")
_ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp"}


def input_images(env: Environment) -> list[str]:
    """Image files in the input folder, subfolders included (``"sub/name.png"``)."""
    return list_files(env.paths.input_dir, IMAGE_EXTENSIONS)


def input_files(env: Environment) -> list[str]:
    """Every file in the input folder (LoadImageMask lists them all, as ComfyUI does)."""
    return list_files(env.paths.input_dir)


def resolve_input_file(name: Any, env: Environment) -> Path:
    """The confined path of a LoadImage-style name: ``"x.png"``, ``"sub/x.png"`` or ``"x.png [output]"``.

    Raises :class:`PathRejected` (a NodeInputError) for a malformed, escaping or missing name.
    """
    if not isinstance(name, str) or not name.strip():
        raise PathRejected("no image given: choose a file from the input folder or upload one", 400)
    kind = "input"
    for suffix, folder in _ANNOTATIONS.items():
        if name.endswith(suffix):
            name, kind = name[: -len(suffix)], folder
            break
    path = confine(env.paths.directory(kind), name, must_exist=True)
    if not path.is_file():
        raise PathRejected(f"{name!r} is not a file", 404)
    return path


def _file_problem(name: Any, env: Environment) -> str | None:
    try:
        resolve_input_file(name, env)
    except PathRejected as error:
        return f"Invalid image file: {error}"
    return None


def _file_fingerprint(name: Any, env: Environment) -> str:
    try:
        return file_sha256(resolve_input_file(name, env))
    except (PathRejected, OSError):
        return f"unreadable:{name!r}"


def _read_image(name: str, ctx: NodeContext) -> Any:
    path = resolve_input_file(name, ctx.env)
    return decode_image_bytes(path.read_bytes(), ctx.env.limits.max_image_pixels)


class _ChecksInputFile:
    """Node hooks for an ``image`` input naming a file in the input folder: any existing file is
    accepted (not only the listed ones), a missing or escaping one is rejected at validation, and
    the file's hash joins the cache key."""

    @classmethod
    def validates(cls) -> frozenset[str]:
        return frozenset({"image"})

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        return _file_problem(literals["image"], env) if "image" in literals else None

    @classmethod
    def fingerprint(cls, literals: Mapping[str, Any], env: Environment) -> Any:
        return _file_fingerprint(literals.get("image"), env)


class LoadImage(_ChecksInputFile, Node):
    """Load an image (all frames of an animation as a batch) from the input folder, with its alpha
    as a mask (1 − alpha; 64×64 zeros when the image has no alpha)."""

    display_name: ClassVar[str] = "Load Image"
    category: ClassVar[str] = "image"

    image: str = Combo(input_images, image_upload=True, tooltip="File in the input folder, e.g. 'sub/name.png'.")

    class Outputs(NodeOutputs):
        image: Image = Output(name="IMAGE")
        mask: Mask = Output(name="MASK")

    def run(self, ctx: NodeContext) -> LoadImage.Outputs:
        from nodes._imaging import image_and_mask_from_pil

        pixels, mask = image_and_mask_from_pil(_read_image(self.image, ctx))
        return self.Outputs(image=Image(pixels), mask=Mask(mask))


class LoadImageMask(_ChecksInputFile, Node):
    """Load one channel of an image from the input folder as a mask (alpha is inverted: 1 − alpha)."""

    display_name: ClassVar[str] = "Load Image (as Mask)"
    category: ClassVar[str] = "mask"

    image: str = Combo(input_files, image_upload=True)
    channel: str = Combo(MASK_CHANNELS)

    class Outputs(NodeOutputs):
        mask: Mask = Output(name="MASK")

    def run(self, ctx: NodeContext) -> LoadImageMask.Outputs:
        from nodes._imaging import mask_from_pil_channel

        return self.Outputs(mask=Mask(mask_from_pil_channel(_read_image(self.image, ctx), self.channel)))


def _check_output_size(width: int, height: int, ctx: NodeContext) -> None:
    from graphengine.errors import NodeInputError

    cap = ctx.env.limits.max_image_pixels
    if width * height > cap:
        raise NodeInputError(f"result of {width}×{height} pixels is over the limit of {cap} pixels per image")


class ImageScale(Node):
    """Resize images to a width and height; 0 for one of them keeps the aspect ratio, 0 for both
    leaves the images as they are. ``crop: center`` crops to the target aspect ratio first."""

    display_name: ClassVar[str] = "Upscale Image"
    category: ClassVar[str] = "image/upscaling"

    image: Image = Input()
    upscale_method: str = Combo(UPSCALE_METHODS)
    width: int = Input(512, min=0, max=MAX_SIDE, step=1)
    height: int = Input(512, min=0, max=MAX_SIDE, step=1)
    crop: str = Combo(CROP_METHODS)

    class Outputs(NodeOutputs):
        image: Image = Output(name="IMAGE")

    def run(self, ctx: NodeContext) -> ImageScale.Outputs:
        from nodes._imaging import keep_aspect, resize_images

        pixels = self.image.pixels
        if self.width == 0 and self.height == 0:
            return self.Outputs(image=self.image)
        width, height = keep_aspect(pixels.shape[2], pixels.shape[1], self.width, self.height)
        _check_output_size(width, height, ctx)
        return self.Outputs(image=Image(resize_images(pixels, width, height, self.upscale_method, self.crop)))


class ImageScaleBy(Node):
    """Resize images by a factor."""

    display_name: ClassVar[str] = "Upscale Image By"
    category: ClassVar[str] = "image/upscaling"

    image: Image = Input()
    upscale_method: str = Combo(UPSCALE_METHODS)
    scale_by: float = Input(1.0, min=0.01, max=8.0, step=0.01)

    class Outputs(NodeOutputs):
        image: Image = Output(name="IMAGE")

    def run(self, ctx: NodeContext) -> ImageScaleBy.Outputs:
        from nodes._imaging import resize_images, scaled_size

        pixels = self.image.pixels
        width, height = scaled_size(pixels.shape[2], pixels.shape[1], self.scale_by)
        _check_output_size(width, height, ctx)
        return self.Outputs(image=Image(resize_images(pixels, width, height, self.upscale_method, "disabled")))


class ImageInvert(Node):
    """Invert the colours of images (1 − x)."""

    display_name: ClassVar[str] = "Invert Image"
    category: ClassVar[str] = "image"

    image: Image = Input()

    class Outputs(NodeOutputs):
        image: Image = Output(name="IMAGE")

    def run(self, ctx: NodeContext) -> ImageInvert.Outputs:
        return self.Outputs(image=Image(1.0 - self.image.pixels))


class ImageBatch(Node):
    """Join two image batches; the second is resized (bilinear, centre crop) to the first's size if
    they differ."""

    display_name: ClassVar[str] = "Batch Images"
    category: ClassVar[str] = "image"

    image1: Image = Input()
    image2: Image = Input()

    class Outputs(NodeOutputs):
        image: Image = Output(name="IMAGE")

    def run(self, ctx: NodeContext) -> ImageBatch.Outputs:
        import torch

        from nodes._imaging import resize_images

        first, second = self.image1.pixels, self.image2.pixels
        if first.shape[1:] != second.shape[1:]:
            if first.shape[-1] != second.shape[-1]:
                second = second[..., : first.shape[-1]]
            second = resize_images(second, first.shape[2], first.shape[1], "bilinear", "center")
        return self.Outputs(image=Image(torch.cat((first, second.to(first.dtype)), dim=0)))


def pack() -> NodePack:
    return NodePack(
        name="image",
        nodes=(LoadImage, LoadImageMask, ImageScale, ImageScaleBy, ImageInvert, ImageBatch),
    )
