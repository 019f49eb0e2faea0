"""Output nodes: save and preview images, save and load latents, send images over the websocket.

File names follow ComfyUI (``prefix_00001_.png``); names are reserved on the execution thread (the
empty file is created exclusively) and the PNG encoding and writing run through ``ctx.background``,
so the sampler never waits for the disk. Importing this module does not import torch.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from graphengine.errors import NodeInputError
from graphengine.files import (
    OutputName,
    PathRejected,
    confine,
    encode_png,
    file_sha256,
    list_files,
    next_output_name,
    png_text_chunks,
    reserve_file,
    write_atomically,
)
from graphengine.node import NEVER_CACHE, Combo, Hidden, Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Image, Latent

if TYPE_CHECKING:
    from graphengine.environment import Environment

logger = logging.getLogger(__name__)

LATENT_EXTENSION = ".latent"
SD_SCALE_FACTOR = 0.18215  # pre-versioned .latent files stored latents multiplied by this
LATENT_FORMAT_MARKER = "latent_format_version_0"
PREVIEW_SUFFIX_LETTERS = string.ascii_lowercase


def _metadata(ctx: NodeContext) -> dict[str, str]:
    if not ctx.env.write_metadata:
        return {}
    return png_text_chunks(ctx.prompt if ctx.prompt is not None else None, ctx.extra_pnginfo)


def _reserve(name: OutputName, counter: int, extension: str, batch_number: int) -> tuple[Path, str, int]:
    """Claim the first free ``<name>_<counter>_.<ext>`` at or after ``counter``."""
    for _ in range(100_000):
        file_name = name.file_name(counter, extension, batch_number)
        path = confine(name.full_dir, file_name, allow_hidden=True)
        if reserve_file(path):
            return path, file_name, counter
        counter += 1
    raise NodeInputError(f"no free file name for prefix {name.filename!r} in {name.subfolder or 'the output folder'}")


def _write_later(ctx: NodeContext, path: Path, produce: Callable[[], bytes]) -> None:
    """Encode and write on the background worker; on failure remove the reserved file."""

    def work() -> None:
        try:
            write_atomically(path, produce())
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    ctx.background(work)


def save_images(
    ctx: NodeContext, pixels: Any, root: Path, prefix: str, kind: str, compress_level: int
) -> list[dict[str, str]]:
    """Write an ``[B, H, W, 3]`` batch as PNGs under ``root``; returns ComfyUI's UI entries."""
    from nodes._imaging import to_pil_images

    images = to_pil_images(pixels)
    if not images:
        return []
    try:
        name = next_output_name(root, prefix, images[0].width, images[0].height)
    except PathRejected as error:
        raise NodeInputError(f"filename_prefix {prefix!r} is not allowed: {error}") from None
    chunks = _metadata(ctx)
    logger.debug("saving %d image(s) as %s/%s_*", len(images), name.full_dir, name.filename)
    results = []
    counter = name.counter
    for batch_number, image in enumerate(images):
        path, file_name, counter = _reserve(name, counter, "png", batch_number)
        _write_later(ctx, path, lambda image=image: encode_png(image, chunks, compress_level))
        results.append({"filename": file_name, "subfolder": name.subfolder, "type": kind})
        counter += 1
    return results


class SaveImage(Node):
    """Save images to the output folder as PNG, with the prompt (and workflow) as PNG text."""

    display_name: ClassVar[str] = "Save Image"
    category: ClassVar[str] = "image"
    output_node: ClassVar[bool] = True
    hidden: ClassVar[tuple[Hidden, ...]] = (Hidden.PROMPT, Hidden.EXTRA_PNGINFO)

    images: Image = Input(tooltip="The images to save.")
    filename_prefix: str = Input(
        "ComfyUI",
        tooltip="The prefix for the file to save. This may include formatting information such as "
        "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
    )

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: NodeContext) -> SaveImage.Outputs:
        output_dir = ctx.env.paths.output_dir
        results = save_images(ctx, self.images.pixels, output_dir, self.filename_prefix, "output", 4)
        return self.Outputs(ui={"images": results})


class PreviewImage(Node):
    """Save images to the temporary folder for display (removed when the server restarts)."""

    display_name: ClassVar[str] = "Preview Image"
    category: ClassVar[str] = "image"
    output_node: ClassVar[bool] = True
    hidden: ClassVar[tuple[Hidden, ...]] = (Hidden.PROMPT, Hidden.EXTRA_PNGINFO)

    images: Image = Input()

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: NodeContext) -> PreviewImage.Outputs:
        suffix = "".join(secrets.choice(PREVIEW_SUFFIX_LETTERS) for _ in range(5))
        temp_dir = ctx.env.paths.temp_dir
        results = save_images(ctx, self.images.pixels, temp_dir, f"ComfyUI_temp_{suffix}", "temp", 1)
        return self.Outputs(ui={"images": results})


class SaveLatent(Node):
    """Save latents to the output folder in ComfyUI's ``.latent`` (safetensors) format."""

    category: ClassVar[str] = "_for_testing"
    output_node: ClassVar[bool] = True
    hidden: ClassVar[tuple[Hidden, ...]] = (Hidden.PROMPT, Hidden.EXTRA_PNGINFO)

    samples: Latent = Input()
    filename_prefix: str = Input("latents/ComfyUI")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: NodeContext) -> SaveLatent.Outputs:
        import torch
        from safetensors.torch import save

        try:
            name = next_output_name(ctx.env.paths.output_dir, self.filename_prefix)
        except PathRejected as error:
            raise NodeInputError(f"filename_prefix {self.filename_prefix!r} is not allowed: {error}") from None
        path, file_name, _ = _reserve(name, name.counter, LATENT_EXTENSION.lstrip("."), 0)
        tensors = {
            "latent_tensor": self.samples.samples.detach().to("cpu").contiguous(),
            LATENT_FORMAT_MARKER: torch.tensor([]),
        }
        metadata = _metadata(ctx) or None
        _write_later(ctx, path, lambda: save(tensors, metadata=metadata))
        return self.Outputs(ui={"latents": [{"filename": file_name, "subfolder": name.subfolder, "type": "output"}]})


def input_latents(env: Environment) -> list[str]:
    """``.latent`` files in the input folder."""
    return list_files(env.paths.input_dir, (LATENT_EXTENSION,))


def _latent_path(name: Any, env: Environment) -> Path:
    if not isinstance(name, str) or not name:
        raise PathRejected("no latent file given", 400)
    path = confine(env.paths.input_dir, name, must_exist=True)
    if not path.is_file():
        raise PathRejected(f"{name!r} is not a file", 404)
    return path


class LoadLatent(Node):
    """Load latents saved by SaveLatent from the input folder (older unversioned files are divided
    by the SD scale factor 0.18215, as ComfyUI does)."""

    category: ClassVar[str] = "_for_testing"

    latent: str = Combo(input_latents)

    class Outputs(NodeOutputs):
        latent: Latent = Output(name="LATENT")

    @classmethod
    def validates(cls) -> frozenset[str]:
        return frozenset({"latent"})

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        if "latent" not in literals:
            return None
        try:
            _latent_path(literals["latent"], env)
        except PathRejected as error:
            return f"Invalid latent file: {error}"
        return None

    @classmethod
    def fingerprint(cls, literals: Mapping[str, Any], env: Environment) -> Any:
        try:
            return file_sha256(_latent_path(literals.get("latent"), env))
        except (PathRejected, OSError):
            return f"unreadable:{literals.get('latent')!r}"

    def run(self, ctx: NodeContext) -> LoadLatent.Outputs:
        from safetensors import SafetensorError
        from safetensors.torch import load

        path = _latent_path(self.latent, ctx.env)
        try:
            tensors = load(path.read_bytes())
        except (SafetensorError, ValueError, OSError) as error:
            raise NodeInputError(f"{self.latent!r} is not a readable .latent (safetensors) file: {error}") from None
        samples = tensors.get("latent_tensor")
        if samples is None or samples.ndim != 4:
            raise NodeInputError(f"{self.latent!r} holds no 4-D 'latent_tensor'")
        multiplier = 1.0 if LATENT_FORMAT_MARKER in tensors else 1.0 / SD_SCALE_FACTOR
        return self.Outputs(latent=Latent(samples=samples.float() * multiplier))


def _send_images(ctx: NodeContext, pixels: Any, image_format: str) -> int:
    from nodes._imaging import to_pil_images

    images = to_pil_images(pixels)
    for step, image in enumerate(images):
        ctx.progress(step, len(images))
        ctx.send_binary_image(image, image_format)
    return len(images)


class SaveImageWebsocket(Node):
    """Send images to the prompt's websocket client as binary PNG frames, without writing files."""

    category: ClassVar[str] = "api/image"
    python_module: ClassVar[str] = "custom_nodes.websocket_image_save"
    output_node: ClassVar[bool] = True

    images: Image = Input()

    class Outputs(NodeOutputs):
        pass

    @classmethod
    def fingerprint(cls, literals: Mapping[str, Any], env: Environment) -> Any:
        return NEVER_CACHE  # the frames are the result: send them on every run

    def run(self, ctx: NodeContext) -> SaveImageWebsocket.Outputs:
        _send_images(ctx, self.images.pixels, "PNG")
        return self.Outputs()


class SendImageWebSocket(Node):
    """Send images over the client websocket as binary frames (PNG or JPEG); the ``executed``
    output lists one ``{source: websocket}`` entry per image."""

    class_type: ClassVar[str] = "ETN_SendImageWebSocket"
    display_name: ClassVar[str] = "Send Image (WebSocket)"
    category: ClassVar[str] = "external_tooling"
    python_module: ClassVar[str] = "custom_nodes.comfyui-tooling-nodes"
    output_node: ClassVar[bool] = True

    images: Image = Input()
    format: str = Combo(("PNG", "JPEG"), default="PNG")

    class Outputs(NodeOutputs):
        pass

    @classmethod
    def fingerprint(cls, literals: Mapping[str, Any], env: Environment) -> Any:
        return NEVER_CACHE  # a cached run would send nothing, leaving the client waiting

    def run(self, ctx: NodeContext) -> SendImageWebSocket.Outputs:
        count = _send_images(ctx, self.images.pixels, self.format)
        entry = {"source": "websocket", "content-type": f"image/{self.format.lower()}", "type": "output"}
        return self.Outputs(ui={"images": [dict(entry) for _ in range(count)]})


def pack() -> NodePack:
    return NodePack(
        name="output",
        nodes=(SaveImage, PreviewImage, SaveLatent, LoadLatent, SaveImageWebsocket, SendImageWebSocket),
    )
